"""`lamplighter stats`: per queue, how many jobs wait, run, finished and failed. The figures are
storage/queues.py's, the same ones the dashboard and /metrics show."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from console import cli

if TYPE_CHECKING:
    from storage.queues import QueueStats

TABLE_COLUMNS = ["queue", "waiting", "scheduled", "running", "completed", "failed", "dead", "cancelled",
                 "oldest_waiting_s"]


def register(verbs) -> None:
    s = verbs.add_parser("stats", help="per queue: waiting, scheduled, running, completed, failed, dead")
    s.add_argument("--by-actor", action="store_true",
                   help="per queue and actor, with completed/failed in the window and run time p50/p95 "
                        "(the view of GET /api/queues/stats)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_stats)


@dataclass(frozen=True)
class StatsView:
    queues: list[QueueStats]
    window_seconds: float  # "failed" counts failed attempts in this many seconds up to now


def stats_view(*, window_seconds: float) -> StatsView:
    from storage import queues

    return StatsView(queues=queues.stats(window_seconds=window_seconds), window_seconds=window_seconds)


def table_rows(view: StatsView) -> list[dict]:
    """The table's rows: a paused queue says so next to its name; ages in seconds."""
    rows = []
    for figures in view.queues:
        row = _approximate(asdict(figures))
        row["queue"] = row.pop("queue_name") + (" (paused)" if row["paused"] else "")
        row["oldest_waiting_s"] = row.pop("oldest_waiting_age")
        rows.append(row)
    return rows


ACTOR_COLUMNS = ["queue", "actor", "waiting", "scheduled", "running", "completed", "failed", "dead",
                 "oldest_waiting_s", "p50_ms", "p95_ms"]


@dataclass(frozen=True)
class ActorStatsView:
    """Per queue and actor; ``completed`` and ``failed`` count attempts within the window, and the
    run-time percentiles are of those attempts. `GET /api/queues/stats` returns this view."""

    window_seconds: float
    actors: list


def actor_stats_view(*, window_seconds: float) -> ActorStatsView:
    from storage import stats

    return ActorStatsView(window_seconds=window_seconds, actors=stats.by_actor(window_seconds=window_seconds))


def actor_table_rows(view: ActorStatsView) -> list[dict]:
    return [_approximate({"queue": a.queue_name, "actor": a.actor_name, "waiting": a.waiting,
                          "scheduled": a.scheduled, "running": a.running, "completed": a.completed,
                          "failed": a.failed, "dead": a.dead, "oldest_waiting_s": a.oldest_waiting_age,
                          "p50_ms": a.run_ms_p50, "p95_ms": a.run_ms_p95, "estimated": a.estimated})
            for a in view.actors]


def _estimates_note(shown: bool) -> None:
    if shown:
        from storage.queues import EXACT_UP_TO

        print(f"(≈ = the planner's estimate: counting stops at {EXACT_UP_TO:,} jobs of a queue)")


def _approximate(row: dict) -> dict:
    """Estimated figures (past storage.queues.EXACT_UP_TO jobs) printed as "≈N"."""
    for name in row.pop("estimated", ()):
        row[name] = f"≈{row[name]}"
    return row


def cmd_stats(args, settings) -> int:
    if args.by_actor:
        view = actor_stats_view(window_seconds=settings.failed_window)
        if args.json:
            cli.print_json(view)
            return 0
        print(cli.table(actor_table_rows(view), ACTOR_COLUMNS))
        print(f"(completed, failed and run times: attempts in the last {view.window_seconds:g} s)")
        _estimates_note(any(a.estimated for a in view.actors))
        return 0
    view = stats_view(window_seconds=settings.failed_window)
    if args.json:
        cli.print_json(view.queues)
        return 0
    print(cli.table(table_rows(view), TABLE_COLUMNS))
    print(f"(failed = failed attempts in the last {view.window_seconds:g} s)")
    _estimates_note(any(q.estimated for q in view.queues))
    return 0
