"""`lamplighter`: the command line. Arguments are checked before anything touches the database,
so a bad argument gets one line and exit code 2 even when PostgreSQL is down.

Exit codes: 0 success, 1 failure (database unreachable, job not found, action refused),
2 usage or configuration error.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import uuid
from datetime import datetime, timezone

DATABASE_ERRORS: tuple = ()
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments found after parsing (e.g. unknown actor); exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _json_args(text: str):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, (list, dict)):
        raise argparse.ArgumentTypeError("must be a JSON array (positional) or object (keyword arguments)")
    return value


def _job_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a UUID)") from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("must be zero or more seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _queue_name(text: str) -> str:
    from storage.settings import SettingsError, validate_queue_name

    try:
        return validate_queue_name(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


STATES = ("queued", "running", "completed", "dead", "cancelled")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lamplighter", description="Background jobs on PostgreSQL: run, inspect and operate.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    verbs.add_parser("up", help="run release, worker, scheduler and web together (embedded PostgreSQL "
                                "when DATABASE_URL is unset)")
    verbs.add_parser("migrate", help="apply schema migrations (the release step; safe to re-run)")
    w = verbs.add_parser("worker", help="run worker processes (dramatiq over the actors package)")
    w.add_argument("--processes", "-p", type=_positive_int, help="worker processes (LAMPLIGHTER_WORKER_PROCESSES)")
    w.add_argument("--threads", "-t", type=_positive_int, help="threads per process (LAMPLIGHTER_WORKER_THREADS)")
    w.add_argument("--queues", "-Q", nargs="+", type=_queue_name, help="queues to consume (default: all)")
    verbs.add_parser("scheduler", help="run the cron scheduler (one leader, standbys wait)")
    web = verbs.add_parser("web", help="run the web process (health, console, metrics) on $PORT")
    web.add_argument("--port", type=int, help="port (PORT)")

    e = verbs.add_parser("enqueue", help="enqueue a job for ACTOR")
    e.add_argument("actor", metavar="ACTOR")
    e.add_argument("--args", type=_json_args, default=[], help="JSON array (positional) or object (keyword)")
    e.add_argument("--queue", type=_queue_name, help="queue (default: the actor's)")
    e.add_argument("--delay", type=_non_negative, default=0.0, help="seconds before it may run")
    e.add_argument("--priority", type=int, help="lower runs first (default: the actor's)")

    j = verbs.add_parser("jobs", help="list jobs, newest change first")
    j.add_argument("--state", choices=STATES)
    j.add_argument("--actor")
    j.add_argument("--queue", type=_queue_name)
    j.add_argument("--limit", type=_positive_int, default=50)
    j.add_argument("--json", action="store_true", help="machine-readable output")

    one = verbs.add_parser("job", help="show one job and every attempt")
    one.add_argument("job_id", metavar="ID", type=_job_id)
    one.add_argument("--json", action="store_true")

    r = verbs.add_parser("retry", help="queue a dead, cancelled or completed job again (or, with --dead, "
                                       "every dead job matching the filters)")
    r.add_argument("job_id", metavar="ID", type=_job_id, nargs="?")
    r.add_argument("--args", type=_json_args, help="run with these arguments instead (recorded)")
    r.add_argument("--dead", action="store_true", help="bulk redrive of dead jobs; filter with:")
    r.add_argument("--actor", help="with --dead: only this actor")
    r.add_argument("--queue", type=_queue_name, help="with --dead: only this queue")
    r.add_argument("--error-type", help="with --dead: only this error type (e.g. TimeLimitExceeded)")
    r.add_argument("--limit", type=_positive_int, default=1000, help="with --dead: at most this many (1000)")
    c = verbs.add_parser("cancel", help="cancel a waiting job, or ask a running one to stop")
    c.add_argument("job_id", metavar="ID", type=_job_id)

    s = verbs.add_parser("stats", help="per queue: waiting, scheduled, running, completed, failed, dead")
    s.add_argument("--json", action="store_true")
    ws = verbs.add_parser("workers", help="live workers: host, pid, queues, version, heartbeat, running jobs")
    ws.add_argument("--json", action="store_true")

    q = verbs.add_parser("queue", help="pause or resume a queue")
    q.add_argument("action", choices=("pause", "resume"))
    q.add_argument("queue", metavar="QUEUE", type=_queue_name)

    sc = verbs.add_parser("schedule", help="list schedules (next fire times, last run); pause, resume or run one now")
    sc.add_argument("action", nargs="?", default="list", choices=("list", "pause", "resume", "run"))
    sc.add_argument("key", metavar="KEY", nargs="?", help="schedule key (for pause, resume, run)")
    sc.add_argument("--json", action="store_true")

    acc = verbs.add_parser("accounts", help="managed accounts at the identity provider (Zitadel)")
    acc_actions = acc.add_subparsers(dest="accounts_action", metavar="ACTION", parser_class=_Parser)
    acc_actions.required = True
    ac = acc_actions.add_parser("create", help="queue a managed-account creation; the password is read from a "
                                               "prompt or the first line of stdin, never from the command line")
    ac.add_argument("--organization", required=True, help="family/organisation id the account belongs to")
    ac.add_argument("--username", required=True)
    ac.add_argument("--given-name", required=True)
    ac.add_argument("--family-name", required=True)
    ac.add_argument("--email", required=True)
    ac.add_argument("--role", required=True)
    ac.add_argument("--created-by", help="the requesting admin, notified if creation fails (default: you)")
    ac.add_argument("--no-password", action="store_true",
                    help="create the account without a password (Zitadel e-mails the user)")
    al = acc_actions.add_parser("list", help="creation requests, newest first (passwords are never shown)")
    al.add_argument("--status", choices=("pending", "processing", "completed", "failed"))
    al.add_argument("--limit", type=_positive_int, default=50)
    al.add_argument("--json", action="store_true")
    return parser


def operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    text = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in text]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _print_json(value) -> None:
    print(json.dumps(value, default=str, indent=2))


# ---- verbs --------------------------------------------------------------------------------

def release():
    """The release step: check the schedules declared on the actors, migrate, sync them into
    the schedules table (docs/scheduler.md). Returns (migrations applied, sync report)."""
    from scheduler import sync
    from storage import schema
    from storage.schedules import DeclarationError

    try:
        from actors import broker

        definitions = sync.definitions_from_broker(broker)
    except DeclarationError as exc:
        raise UsageError(f"bad schedule declaration: {exc}") from None
    applied = schema.migrate()
    report = sync.sync(definitions)
    broker.register_actors()  # SQL enqueue (lamplighter.enqueue) knows them before any worker starts
    return applied, report


def cmd_migrate(args, settings) -> int:
    applied, report = release()
    print(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else " (schema is current)"))
    print(report.summary())
    return 0


def cmd_enqueue(args, settings) -> int:
    from actors import broker
    from storage import engine as broker_module

    try:
        actor = broker.get_actor(args.actor)
    except Exception:
        known = ", ".join(sorted(broker.actors))
        raise UsageError(f"unknown actor {args.actor!r} (known: {known})") from None
    positional, keyword = (args.args, {}) if isinstance(args.args, list) else ([], args.args)
    try:
        broker.check_arguments(actor, tuple(positional), keyword)
    except TypeError as exc:
        raise UsageError(f"--args do not fit {args.actor}: {exc}") from None
    options = {}
    if args.queue:
        options["queue_name"] = args.queue
    if args.priority is not None:
        options["priority"] = args.priority
    message = actor.message_with_options(args=tuple(positional), kwargs=keyword, **options)
    if args.queue:
        message = message.copy(queue_name=args.queue)
    token = broker_module.enqueued_by.set(operator())
    try:
        broker.enqueue(message, delay=int(args.delay * 1000) or None)
    except broker_module.PayloadError as exc:
        raise UsageError(str(exc)) from None
    finally:
        broker_module.enqueued_by.reset(token)
    print(message.message_id)
    return 0


def cmd_jobs(args, settings) -> int:
    from storage import jobs

    found = jobs.list_jobs(state=args.state, actor=args.actor, queue=args.queue, limit=args.limit)
    rows = [{"id": str(j.message_id), "actor": j.actor_name, "queue": j.queue_name, "state": j.state,
             "attempt": j.attempt, "available_at": j.available_at, "changed": j.mtime,
             "last_error": (j.last_error or "")[:60] or None} for j in found]
    if args.json:
        _print_json(rows)
    else:
        print(_table(rows, ["id", "actor", "queue", "state", "attempt", "available_at", "changed", "last_error"]))
    return 0


def cmd_job(args, settings) -> int:
    from storage import jobs

    job = jobs.get(args.job_id)
    if args.json:
        from dataclasses import asdict

        _print_json(asdict(job))
        return 0
    fields = [("id", job.message_id), ("actor", job.actor_name), ("queue", job.queue_name),
              ("state", job.state), ("args", json.dumps(job.args)), ("kwargs", json.dumps(job.kwargs)),
              ("priority", job.priority), ("enqueued_at", job.enqueued_at), ("enqueued_by", job.enqueued_by),
              ("available_at", job.available_at), ("attempts", f"{job.attempt} of {job.max_attempts or 'unlimited'}"),
              ("worker", job.worker_id), ("finished_at", job.finished_at), ("tenant", job.tenant_id),
              ("last_error", job.last_error)]
    if job.state == "queued" and job.attempt:
        fields.insert(10, ("next_attempt", job.available_at))
    if job.unique_key:
        fields.append(("unique_key", f"{job.unique_key} (held while {', '.join(job.unique_states or []) or 'never'})"))
    if job.concurrency_key:
        fields.append(("concurrency", f"{job.concurrency_key} (at most {job.concurrency_limit or 1} at once)"))
    if job.cancel_requested:
        fields.append(("cancel", "requested"))
    for name, value in fields:
        print(f"{name + ':':14}{_cell(value)}")
    print()
    if job.events:
        print(_table([{"at": e.at, "event": e.event, "by": e.requested_by,
                       "detail": json.dumps(e.detail)[:80] if e.detail else None} for e in job.events],
                     ["at", "event", "by", "detail"]))
        print()
    rows = [{"attempt": a.attempt, "outcome": a.outcome, "started": a.started_at, "finished": a.finished_at,
             "duration_ms": a.duration_ms, "worker": str(a.worker_id)[:8] if a.worker_id else None,
             "error": f"{a.error_type}: {a.error_message}"[:80] if a.error_type else None}
            for a in job.attempts]
    print(_table(rows, ["attempt", "outcome", "started", "finished", "duration_ms", "worker", "error"]))
    return 0


def cmd_retry(args, settings) -> int:
    from storage import jobs

    if args.dead:
        if args.job_id or args.args is not None:
            raise UsageError("--dead redrives by filters; give no ID and no --args")
        redriven = jobs.requeue_matching(actor=args.actor, queue=args.queue, error_type=args.error_type,
                                         limit=args.limit, by=operator())
        print(f"{len(redriven)} dead job(s) queued again")
        return 0
    if not args.job_id:
        raise UsageError("give a job ID, or --dead with filters for a bulk redrive")
    if args.actor or args.queue or args.error_type:
        raise UsageError("--actor, --queue and --error-type go with --dead")
    message, detail = None, {"edited_args": False}
    if args.args is not None:
        job = jobs.get(args.job_id)
        positional, keyword = (args.args, {}) if isinstance(args.args, list) else ([], args.args)
        message = {**job.message, "args": positional, "kwargs": keyword}
        detail = {"edited_args": True, "previous": {"args": job.args, "kwargs": job.kwargs}}
    jobs.requeue(args.job_id, message=message, by=operator(), detail=detail)
    print(f"{args.job_id} queued again" + (" with edited arguments" if message else ""))
    return 0


def cmd_cancel(args, settings) -> int:
    from storage import jobs

    print(f"{args.job_id}: {jobs.cancel(args.job_id, by=operator())}")
    return 0


def cmd_stats(args, settings) -> int:
    from dataclasses import asdict

    from storage import queues

    rows = [asdict(s) for s in queues.stats(window_seconds=settings.failed_window)]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        r["queue"] = r.pop("queue_name") + (" (paused)" if r["paused"] else "")
        r["oldest_waiting_s"] = r.pop("oldest_waiting_age")
    print(_table(rows, ["queue", "waiting", "scheduled", "running", "completed", "failed", "dead",
                        "cancelled", "oldest_waiting_s"]))
    print(f"(failed = failed attempts in the last {settings.failed_window:g} s)")
    return 0


def cmd_workers(args, settings) -> int:
    from dataclasses import asdict

    from storage import workers

    rows = [asdict(w) for w in workers.list_workers()]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        r["heartbeat_age_s"] = float(r.pop("heartbeat_age"))
    print(_table(rows, ["hostname", "pid", "queues", "version", "heartbeat_age_s", "running_jobs", "stopping", "id"]))
    return 0


def cmd_queue(args, settings) -> int:
    from storage import queues

    queues.set_paused(args.queue, args.action == "pause", by=operator())
    print(f"queue {args.queue} {'paused' if args.action == 'pause' else 'resumed'}")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the new account: ")
        if password != getpass.getpass("Repeat it: "):
            raise UsageError("the passwords do not match")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("no password given (use --no-password to create the account without one)")
    return password


def cmd_accounts(args, settings) -> int:
    from domain import accounts
    from storage import accounts as account_rows
    from storage.clock import SystemClock
    from storage.encryption import EncryptionError

    if args.accounts_action == "list":
        found = account_rows.list_requests(status=args.status, limit=args.limit)
        rows = [{"id": r.id, "organization": r.organization_id, "username": r.username, "email": r.email,
                 "role": r.role, "status": r.status, "retries": r.retry_count, "next_retry_at": r.next_retry_at,
                 "idp_user_id": r.idp_user_id, "created_by": r.created_by,
                 "last_error": r.last_error_message} for r in found]
        if args.json:
            _print_json(rows)
        else:
            for r in rows:
                r["last_error"] = (r["last_error"] or "")[:60] or None
            print(_table(rows, ["id", "organization", "username", "status", "retries", "next_retry_at",
                                "idp_user_id", "last_error"]))
        return 0
    password = None if args.no_password else _read_password()
    try:
        request_id = accounts.request_account(
            SystemClock(settings.clock_offset), organization_id=args.organization, username=args.username,
            given_name=args.given_name, family_name=args.family_name, email=args.email, role=args.role,
            created_by=args.created_by or operator(), password=password)
    except (accounts.InvalidAccountRequest, EncryptionError) as exc:
        raise UsageError(str(exc)) from None
    print(f"account request {request_id} queued; the per-minute sweep creates it at the identity provider")
    return 0


def _last_run(last) -> str:
    if last is None:
        return "-"
    text = f"{last.fire_at.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')} {last.kind}"
    if last.missed > 1:
        text += f" ({last.missed} due)"
    if last.outcome == "enqueued":
        return f"{text}: job {str(last.job_id)[:8]} {last.job_state or 'pruned'}"
    return f"{text}: {last.outcome.replace('_', ' ')}"


def _fire_time(moment) -> str:
    local = moment.strftime("%Y-%m-%d %H:%M %Z")
    if moment.utcoffset():
        return f"{local} ({moment.astimezone(timezone.utc).strftime('%H:%M UTC')})"
    return local


def cmd_schedule(args, settings) -> int:
    from scheduler import ticks

    if args.action != "list" and not args.key:
        raise UsageError(f"schedule {args.action} needs a KEY (see `lamplighter schedule`)")
    if args.action in ("pause", "resume"):
        ticks.set_paused(args.key, args.action == "pause", by=operator())
        print(f"schedule {args.key} {'paused' if args.action == 'pause' else 'resumed'}")
        return 0
    if args.action == "run":
        result = ticks.run_now(args.key, by=operator())
        print(result.job_id)
        return 0
    views = ticks.overview(args.key)
    if args.key and not views:
        raise ticks.ScheduleNotFound(f"no schedule {args.key!r}")
    if args.json:
        _print_json([{
            "key": v.schedule.key, "actor": v.schedule.actor_name, "queue": v.schedule.queue_name,
            "cron": v.schedule.cron, "zone": v.schedule.zone, "state": v.state, "args": v.schedule.args,
            "kwargs": v.schedule.kwargs, "misfire": v.schedule.misfire, "grace_seconds": v.schedule.grace_seconds,
            "overlap": v.schedule.overlap, "paused_by": v.schedule.paused_by,
            "next_fire_times": [t.isoformat() for t in v.next_fire_times],
            "next_fire_times_utc": [t.astimezone(timezone.utc).isoformat() for t in v.next_fire_times],
            "last_run": None if v.last_tick is None else {
                "fire_at": v.last_tick.fire_at.isoformat(), "kind": v.last_tick.kind,
                "outcome": v.last_tick.outcome, "job_id": v.last_tick.job_id, "due": v.last_tick.missed,
                "job_state": v.last_tick.job_state}} for v in views])
        return 0
    rows = [{"key": v.schedule.key, "actor": v.schedule.actor_name, "cron": v.schedule.cron,
             "zone": v.schedule.zone, "state": v.state + (f" by {v.schedule.paused_by}" if v.state == "paused" else ""),
             "policy": f"{v.schedule.misfire}/{v.schedule.grace_seconds:g}s, overlap {v.schedule.overlap}",
             "last_run": _last_run(v.last_tick)} for v in views]
    lines = _table(rows, ["key", "actor", "cron", "zone", "state", "policy", "last_run"]).splitlines()
    print(lines[0])
    for view, line in zip(views, lines[1:]):
        print(line)
        upcoming = " | ".join(_fire_time(t) for t in view.next_fire_times)
        label = "next once resumed" if view.state == "paused" else "next"
        print(f"    {label}: {upcoming or '- (disabled: no longer declared in the code)'}")
    return 0


def cmd_worker(args, settings) -> int:
    from console import processes

    return processes.run_worker(settings, processes_=args.processes, threads=args.threads, queues=args.queues)


def cmd_scheduler(args, settings) -> int:
    from scheduler import service

    return service.run(settings)


def cmd_web(args, settings) -> int:
    from console import web

    return web.serve(settings, port=args.port)


def cmd_up(args, settings) -> int:
    from console import processes

    return processes.up(settings)


COMMANDS = {
    "up": cmd_up, "migrate": cmd_migrate, "worker": cmd_worker, "scheduler": cmd_scheduler, "web": cmd_web,
    "enqueue": cmd_enqueue, "jobs": cmd_jobs, "job": cmd_job, "retry": cmd_retry, "cancel": cmd_cancel,
    "stats": cmd_stats, "workers": cmd_workers, "queue": cmd_queue, "accounts": cmd_accounts,
    "schedule": cmd_schedule,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    global DATABASE_ERRORS
    import peewee
    import psycopg2

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
        code = COMMANDS[args.verb](args, settings)
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
    except DATABASE_ERRORS as exc:
        from storage.settings import redact_url

        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = " (is the schema migrated? run `lamplighter migrate`)" if "does not exist" in first_line else ""
        print(f"lamplighter {args.verb}: database error: {redact_url(first_line)}{hint}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
