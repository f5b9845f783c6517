"""`lamplighter schedule [list [KEY]] | pause | resume | run KEY`: the cron schedules. The view is
scheduler/ticks.py's ``overview()``; this module only lays it out."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from console import cli

if TYPE_CHECKING:
    from scheduler.ticks import ScheduleView
    from storage.schedules import LastTick

TABLE_COLUMNS = ["key", "actor", "cron", "zone", "state", "policy", "last_run"]


def register(verbs) -> None:
    sc = verbs.add_parser("schedule", help="list schedules (next fire times, last run); pause, resume or run one now")
    sc.add_argument("action", nargs="?", default="list", choices=("list", "pause", "resume", "run"))
    sc.add_argument("key", metavar="KEY", nargs="?", help="schedule key (for pause, resume, run)")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(run=cmd_schedule)


def as_json(view: ScheduleView) -> dict:
    """One schedule for `schedule --json`: its declaration, state, next fire times (in its zone
    and in UTC) and last run."""
    row, last = view.schedule, view.last_tick
    return {
        "key": row.key, "actor": row.actor_name, "queue": row.queue_name,
        "cron": row.cron, "zone": row.zone, "state": view.state, "args": row.args,
        "kwargs": row.kwargs, "misfire": row.misfire, "grace_seconds": row.grace_seconds,
        "overlap": row.overlap, "paused_by": row.paused_by,
        "next_fire_times": [t.isoformat() for t in view.next_fire_times],
        "next_fire_times_utc": [t.astimezone(timezone.utc).isoformat() for t in view.next_fire_times],
        "last_run": None if last is None else {
            "fire_at": last.fire_at.isoformat(), "kind": last.kind,
            "outcome": last.outcome, "job_id": last.job_id, "due": last.missed,
            "job_state": last.job_state}}


def table_row(view: ScheduleView) -> dict:
    row = view.schedule
    return {"key": row.key, "actor": row.actor_name, "cron": row.cron, "zone": row.zone,
            "state": view.state + (f" by {row.paused_by}" if view.state == "paused" else ""),
            "policy": f"{row.misfire}/{row.grace_seconds:g}s, overlap {row.overlap}",
            "last_run": _last_run(view.last_tick)}


def upcoming_line(view: ScheduleView) -> str:
    """The line under a schedule's row: its next fire times, or why there are none."""
    upcoming = " | ".join(_fire_time(t) for t in view.next_fire_times)
    label = "next once resumed" if view.state == "paused" else "next"
    return f"    {label}: {upcoming or '- (disabled: no longer declared in the code)'}"


def _last_run(last: LastTick | None) -> str:
    if last is None:
        return "-"
    text = f"{last.fire_at.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')} {last.kind}"
    if last.missed > 1:
        text += f" ({last.missed} due)"
    if last.outcome == "enqueued":
        return f"{text}: job {str(last.job_id)[:8]} {last.job_state or 'pruned'}"
    return f"{text}: {last.outcome.replace('_', ' ')}"


def _fire_time(moment: datetime) -> str:
    local = moment.strftime("%Y-%m-%d %H:%M %Z")
    if moment.utcoffset():
        return f"{local} ({moment.astimezone(timezone.utc).strftime('%H:%M UTC')})"
    return local


def cmd_schedule(args, settings) -> int:
    from scheduler import ticks

    if args.action != "list" and not args.key:
        raise cli.UsageError(f"schedule {args.action} needs a KEY (see `lamplighter schedule`)")
    if args.action in ("pause", "resume"):
        ticks.set_paused(args.key, args.action == "pause", by=cli.operator())
        print(f"schedule {args.key} {'paused' if args.action == 'pause' else 'resumed'}")
        return 0
    if args.action == "run":
        result = ticks.run_now(args.key, by=cli.operator())
        print(result.job_id)
        return 0
    views = ticks.overview(args.key)
    if args.key and not views:
        raise ticks.ScheduleNotFound(f"no schedule {args.key!r}")
    if args.json:
        cli.print_json([as_json(v) for v in views])
        return 0
    lines = cli.table([table_row(v) for v in views], TABLE_COLUMNS).splitlines()
    print(lines[0])
    for view, line in zip(views, lines[1:]):
        print(line)
        print(upcoming_line(view))
    return 0
