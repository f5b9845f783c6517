"""`lamplighter`: the command line. Arguments are checked before anything touches the database,
so a bad argument gets one line and exit code 2 even when PostgreSQL is down.

The verbs live by noun in console/verbs/<noun>.py: each module registers its sub-commands and
builds views (plain data) that the functions here print as a table or JSON. This module keeps
the parser assembly, the argument types several nouns share, the output helpers and `main()`,
which maps errors to exit codes: 0 success, 1 failure (database unreachable, job not found,
action refused), 2 usage or configuration error.
"""
from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import re
import socket
import sys
import uuid
from datetime import datetime, timedelta, timezone

DATABASE_ERRORS: tuple = ()
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments found after parsing (e.g. unknown actor); exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and exit code 2 (every verb's parser is one)."""

    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---- argument types ------------------------------------------------------------------------

def json_args(text: str):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:  # argparse turns only ValueError and TypeError into its one-line error
        raise argparse.ArgumentTypeError("JSON nested too deeply") from None
    if not isinstance(value, (list, dict)):
        raise argparse.ArgumentTypeError("must be a JSON array (positional) or object (keyword arguments)")
    return value


def job_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a UUID)") from None


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("must be zero or more seconds")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def whole_number(low: int, high: int, what: str):
    """An argument type: a whole number from ``low`` to ``high`` (a port, a priority)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}")
        return value

    parse.__name__ = what
    return parse


port = whole_number(1, 65535, "port")
# The queue table's priority is a PostgreSQL integer: outside it the insert failed (exit 1).
priority = whole_number(-2**31, 2**31 - 1, "priority")


def queue_name(text: str) -> str:
    from storage.settings import SettingsError, validate_queue_name

    try:
        return validate_queue_name(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def tenant_id(text: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tenant id (1 to 63 lowercase letters, digits, '-', '_')")
    return text


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=36_500)


def duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``."""
    match = _RELATIVE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90s, 30m, 12h, 7d)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    # Longer ones overflowed (OverflowError, a traceback: argparse only reports ValueError and
    # TypeError) here or when added to now, as `audit --since 99999999d` did.
    if seconds > MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is longer than {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def instant(text: str) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-12-01 or "
                                         "2026-12-01T09:30+01:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def moment_or_age(text: str) -> datetime | timedelta:
    """An instant (ISO 8601), or an age (``24h``, ``7d``: that long ago)."""
    if _RELATIVE.match(text.strip()):
        return duration(text)
    try:
        return instant(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an age (e.g. 24h, 7d) nor an ISO 8601 date or "
                                         "time (e.g. 2026-12-01)") from None


def read_secret(prompt: str, *, what: str = "password") -> str:
    """A password from a prompt (asked twice) or, when stdin is not a terminal, its first line.
    Never from the command line, where other users and the shell history would see it."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{prompt}: ")
        if value != getpass.getpass("Repeat it: "):
            raise UsageError(f"the {what}s do not match")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise UsageError(f"no {what} given (type it at the prompt, or pipe it on stdin)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from console.verbs import (accounts, alerts, audit, config, jobs, notifications, processes, queues, reports,
                               schedule, stats, tenants, tokens, users, workers)
    from console.verbs import backups, documents, federation, health, integrations, perf, webhooks

    parser = Parser(prog="lamplighter", description="Background jobs on PostgreSQL: run, inspect and operate.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    verbs.required = True
    # The order `lamplighter --help` lists the verbs in: processes first, then what operators use most.
    for noun in (processes, jobs, stats, workers, queues, schedule, alerts, notifications, reports, accounts, users,
                 tokens, tenants, documents, webhooks, integrations, audit, federation, config, health, perf, backups):
        noun.register(verbs)
    return parser


def operator() -> str:
    """Who acts, as job events and audit rows record it; the dashboard will pass its signed-in user."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


# ---- output --------------------------------------------------------------------------------

def table(rows: list, columns: list[str]) -> str:
    """Rows (dicts or dataclasses) as aligned columns, headed by the column names in capitals."""
    if not rows:
        return "(none)"
    text = [[cell(_value(r, c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in text]
    return "\n".join(lines)


def _value(row, column: str):
    return row.get(column) if isinstance(row, dict) else getattr(row, column, None)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def print_json(value) -> None:
    """A view as JSON: dataclasses become objects, anything else JSON lacks (times, ids) a string."""
    print(json.dumps(_plain(value), default=str, indent=2))


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def print_rows(rows: list, columns: list[str], *, as_json: bool) -> None:
    """A listing view: every field as JSON, or the given columns as a table."""
    if as_json:
        print_json(rows)
    else:
        print(table(rows, columns))


# Flags a secret could be typed into. No verb has one (secrets come from a prompt or stdin); they
# are refused before argparse, whose "unrecognized arguments" message would echo the value.
SECRET_FLAGS = ("--password", "--passwd", "--secret", "--token", "--pat")


def refuse_secret_flags(argv: list[str]) -> None:
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in SECRET_FLAGS:
            print(f"lamplighter: error: {flag} is not accepted: secrets are read from a prompt or the first line "
                  "of stdin, never from the command line (its value was not shown)", file=sys.stderr)
            raise SystemExit(EXIT_USAGE)


DISK_FULL = "53100"  # SQLSTATE disk_full: PostgreSQL could not extend a file


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 error, also when peewee wrapped it (its first argument)."""
    for candidate in (exc, *exc.args[:1], exc.__cause__, exc.__context__):
        code = getattr(candidate, "pgcode", None)
        if code:
            return code
    return None


def main(argv: list[str] | None = None) -> int:
    refuse_secret_flags(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    global DATABASE_ERRORS
    import peewee
    import psycopg2

    from domain import errors as domain_errors
    from scheduler import ticks
    from storage import connection, jobs, logs
    from storage import settings as settings_module

    DATABASE_ERRORS = (peewee.DatabaseError, peewee.InterfaceError, psycopg2.Error)

    try:
        settings = settings_module.configure(settings_module.load())
    except settings_module.SettingsError as exc:
        print(f"lamplighter: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.verb not in ("enqueue",):  # enqueue imports actors, which configures logging itself
        logs.configure(log_format=settings.log_format, level=settings.log_level)
    try:
        code = args.run(args, settings)
        sys.stdout.flush()  # a reader that went away shows here, where it is handled, not at exit
        return code
    except BrokenPipeError:
        # `lamplighter jobs | head`: the reader has all it wanted. Stop quietly, as Unix tools do;
        # stdout goes to /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except UsageError as exc:
        print(f"lamplighter {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except connection.DatabaseUnavailable as exc:
        print(f"lamplighter {args.verb}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (jobs.JobNotFound, jobs.JobStateConflict) as exc:
        print(f"lamplighter {args.verb}: {exc.args[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except (ticks.ScheduleNotFound, ticks.ScheduleDisabled) as exc:
        print(f"lamplighter {args.verb}: {exc.args[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except domain_errors.InvalidInput as exc:
        print(f"lamplighter {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except domain_errors.DomainError as exc:
        print(f"lamplighter {args.verb}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except DATABASE_ERRORS as exc:
        from storage.settings import redact_url

        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = " (is the schema migrated? run `lamplighter migrate`)" if "does not exist" in first_line else ""
        if sqlstate(exc) == DISK_FULL:
            hint = (f" (the disk under {settings.data_dir} (LAMPLIGHTER_DATA_DIR) is full: free space there, "
                    "then retry)" if settings.embedded else " (the database server's disk is full)")
        print(f"lamplighter {args.verb}: database error: {redact_url(first_line)}{hint}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
