"""Every `lamplighter` verb, read from the CLI's own parser, with bad arguments: an unknown flag, a
wrong type or an out-of-range number in each typed argument, a bad job id. Each gets exactly one
line on stderr and exit code 2, never a traceback. A bad environment variable (every setting
deploy/app.json describes, set to values of the wrong kind) gets one line naming it and exit 2."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid

import pytest

from console import cli
from tests.cli_runs import run_cli
from tests.conftest import ROOT, lamplighter_env

# A valid value for a required argument, by its type's name (None: untyped text).
VALID = {"positive_int": "1", "int": "1", "job_id": str(uuid.uuid4()), "queue_name": "maintenance",
         "tenant_id": "acme", "duration": "1h", "instant": "2026-12-01", "moment_or_age": "24h",
         "non_negative": "1", "json_args": "[]", "Path": "/nonexistent", "database_url": "postgresql://h/db",
         "_formation": "web=1", "port": "8080", "priority": "0", None: "x"}
# Values each typed argument must refuse.
BAD = {
    "positive_int": ["abc", "1.5", "0", "-1", "", "0x10", "1e3", "nan", "9" * 5_000],
    "int": ["abc", "1.5", "", "nan"],
    "port": ["abc", "0", "-1", "65536", "99999", "", "9" * 5_000],
    "priority": ["abc", "1.5", str(2**31), str(-2**31 - 1), "9" * 5_000],
    "job_id": ["abc", "", "123", "' OR 1=1 --", str(uuid.uuid4())[:-1], "x" * 10_000],
    "queue_name": ["bad name", "", "x" * 101, "q.DQ", "'; DROP TABLE dramatiq.queue; --", "\u00e9"],
    "tenant_id": ["UPPER", "", "x" * 64, "a b", "' OR 1=1 --"],
    "duration": ["abc", "0s", "-5m", "1e3s", "9" * 400 + "d", "99999999d", "5", "nan"],
    "instant": ["abc", "2026-13-01", "2026-02-30", "9999-12-31T25:00", ""],
    "moment_or_age": ["abc", "2026-13-01", "0d", "9" * 400 + "d", "99999999d", ""],
    "non_negative": ["abc", "-1", "nan", "inf", "1e999", "", "9" * 400],
    "json_args": ["{", "1", '"x"', "null", "[" * 10_000 + "]" * 10_000, "[" + "9" * 5_000 + "]", "[NaN]"],
    "database_url": ["mysql://h/db", "", "h/db"],
    "_formation": ["web=abc", "nope", "web=-1"],
}


def _leaves(parser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield list(prefix), parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, (*prefix, name))


def _type(action) -> str | None:
    return getattr(action.type, "__name__", None) if action.type is not None else None


def _skeleton(parser) -> list[tuple[argparse.Action, list[str]]]:
    """The arguments a valid call needs: each required argument with a valid value."""
    needed = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not (action.required or not action.option_strings):
            continue
        if action.nargs == "?":
            continue
        value = list(action.choices)[0] if action.choices else VALID[_type(action)]
        needed.append((action, ([action.option_strings[0]] if action.option_strings else []) + [value]))
    return needed


def _cases():
    """(argv, what) for every verb: an unknown flag, and each bad value in each typed argument."""
    cases = []
    for prefix, parser in _leaves(cli.build_parser()):
        skeleton = _skeleton(parser)
        base = [arg for _, args in skeleton for arg in args]
        cases.append(([*prefix, *base, "--no-such-flag"], f"{' '.join(prefix)} --no-such-flag"))
        cases.append(([*prefix, *base, "--limit=2", "--limit"], f"{' '.join(prefix)} flag without value"))
        for action in parser._actions:
            kind = _type(action)
            bad = BAD.get(kind, []) + (["no-such-choice"] if action.choices else [])
            for value in bad:
                args = [a for other, a_list in skeleton if other is not action for a in a_list]
                given = [action.option_strings[0], value] if action.option_strings else [value]
                # Positionals in their order: the skeleton's, with this one's value in its place.
                if not action.option_strings:
                    args = []
                    for other, a_list in skeleton:
                        args += given if other is action else a_list
                    if action not in [other for other, _ in skeleton]:
                        args += given
                else:
                    args += given
                cases.append(([*prefix, *args], f"{' '.join(prefix)} {action.dest}={value[:30]!r}"))
    return cases


def _outcome(monkeypatch, capsys, argv):
    try:
        code, out, err = run_cli(monkeypatch, capsys, *argv)
    except SystemExit as exc:
        code, (out, err) = exc.code, capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_env(database_url, monkeypatch):
    """The CLI on this test's database; the long-running process verbs never start (they must
    not get past their arguments here)."""
    from console.verbs import processes

    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("cmd_up", "cmd_migrate", "cmd_worker", "cmd_scheduler", "cmd_web"):
        monkeypatch.setattr(processes, name, lambda args, settings, _n=name: pytest.fail(f"{_n} ran: {args}"))
    # One parser for every call (argparse keeps no state between parses): building it takes 18 ms.
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)


def test_every_verb_with_bad_arguments_says_one_line_and_exits_2(cli_env, monkeypatch, capsys):
    cases = _cases()
    assert len(cases) > 200
    wrong = []
    for argv, what in cases:
        try:
            code, out, err = _outcome(monkeypatch, capsys, argv)
        except Exception as exc:  # a traceback
            wrong.append(f"{what}: raised {type(exc).__name__}: {str(exc)[:200]}")
            continue
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or "Traceback" in err or out:
            wrong.append(f"{what}: exit {code}, stderr {err[:300]!r}, stdout {out[:100]!r}")
    assert not wrong, "\n".join(wrong)


def test_an_unknown_verb_no_verb_and_numbers_out_of_range_say_one_line_and_exit_2(cli_env, monkeypatch, capsys):
    for argv in (["no-such-verb"], [], ["jobs", "--state"], ["reports", "nope"], ["--no-such-flag"],
                 ["web", "--port", "65536"], ["web", "--port", "0"], ["worker", "--threads", "0"],
                 ["enqueue", "maintenance.ping", "--priority", str(2**31)], ["jobs", "--limit", "-5"],
                 ["job", "12345"], ["cancel", "' OR 1=1 --"], ["retry", "not-a-uuid"]):
        code, out, err = _outcome(monkeypatch, capsys, argv)
        assert (code, len(err.strip().splitlines()), out) == (2, 1, ""), (argv, code, err)


def _settings() -> list[str]:
    # DATABASE_URL comes from the PostgreSQL add-on, not app.json's env.
    return sorted({*json.loads((ROOT / "deploy" / "app.json").read_text())["env"], "DATABASE_URL"})


NOT_A_VALUE = ["abc", "-1", "nan", "inf", "1e999", "9" * 5_000, " ", "\u00e9\u202e"]


def test_every_setting_with_a_bad_value_says_one_line_naming_it(cli_env, database_url, monkeypatch, capsys):
    """Every setting with each bad value, through what `lamplighter` runs first (Settings.load;
    its SettingsError is the CLI's one line): refused naming the variable, or (free text: a
    name, a list) accepted; never another exception. Then `lamplighter config` with each
    setting set to "abc": exit 2 with one line naming it, or 0."""
    from storage import settings as settings_module

    wrong, refused = [], {value: set() for value in NOT_A_VALUE}
    for name in _settings():
        for value in NOT_A_VALUE:
            try:
                settings_module.load({"DATABASE_URL": database_url, name: value})
            except settings_module.SettingsError as exc:
                refused[value].add(name)
                if len(str(exc).splitlines()) != 1 or name not in str(exc):
                    wrong.append(f"{name}={value[:20]!r}: {str(exc)[:300]!r}")
            except Exception as exc:
                wrong.append(f"{name}={value[:20]!r}: raised {type(exc).__name__}: {str(exc)[:200]}")
    assert not wrong, "\n".join(wrong)
    assert {"LAMPLIGHTER_WORKER_THREADS", "LAMPLIGHTER_POLL_INTERVAL", "DATABASE_URL"} <= refused["abc"]
    # A setting that is not free text refuses what float() would take but is no number to wait for.
    assert refused["abc"] - refused["nan"] == set() and refused["abc"] - refused["inf"] == set()
    for name in _settings():
        monkeypatch.setenv(name, "abc")
        try:
            code, out, err = _outcome(monkeypatch, capsys, ["config", "--json"])
        finally:
            monkeypatch.delenv(name)
        lines = err.strip().splitlines()
        if name in refused["abc"]:
            assert (code, len(lines), out) == (2, 1, "") and name in lines[0], (name, code, err)
        else:
            assert code == 0 and "Traceback" not in err, (name, code, err)


@pytest.mark.parametrize("env, variable", [
    ({"LAMPLIGHTER_WORKER_THREADS": "abc"}, "LAMPLIGHTER_WORKER_THREADS"),
    ({"DATABASE_URL": "postgresql://user:hunter2@[::1/db"}, "DATABASE_URL"),
])
def test_the_installed_command_with_a_bad_environment(database_url, env, variable):
    """The real entry point (a subprocess): one line naming the variable, exit 2, no secret."""
    done = subprocess.run([sys.executable, "-m", "console", "jobs"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=lamplighter_env(**{"DATABASE_URL": database_url, **env}))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and variable in done.stderr, done.stderr
    assert "hunter2" not in done.stderr and done.stdout == ""
