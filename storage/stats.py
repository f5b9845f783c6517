"""Queue statistics per queue and actor, computed in SQL (storage/sql/stats.sql). Counts past
storage.queues.EXACT_UP_TO jobs of a queue are estimates, named in ``estimated``."""
from __future__ import annotations

from dataclasses import dataclass, field

from storage import queues
from storage.queries import rows, runner

execute = runner("stats")


@dataclass(frozen=True)
class ActorStats:
    queue_name: str
    actor_name: str
    waiting: int
    scheduled: int
    running: int
    completed: int  # attempts completed within the window
    failed: int  # attempts failed within the window
    # run_ms_*: of the window's attempts, or its newest EXACT_UP_TO when it held more
    dead: int
    oldest_waiting_age: float  # seconds; of the jobs counted, when waiting is estimated
    run_ms_p50: float | None  # run time of the window's attempts
    run_ms_p95: float | None
    estimated: tuple[str, ...] = field(default=())  # the figures past EXACT_UP_TO: estimates


def by_actor(*, window_seconds: float) -> list[ActorStats]:
    with queues.counting():
        found = rows(execute("stats_by_actor", {"window_seconds": window_seconds,
                                                "exact_up_to": queues.EXACT_UP_TO}))
        figures = []
        for row in found:
            # The queue's count stopped at the bound: each actor's figure is the planner's
            # estimate, never below the jobs counted. Its scheduled jobs are as counted unless
            # some were among them (the planner cannot tell "none" from "a few").
            row["scheduled_capped"] = row["queued_capped"] and row["scheduled"] > 0
            estimated = queues.estimate_waiting(row, queue=row["queue_name"], actor=row["actor_name"])
            if row.pop("dead_capped"):
                row["dead"] = max(row["dead"], queues.count_estimate(queue=row["queue_name"], actor=row["actor_name"],
                                                                     state="dead"))
                estimated.append("dead")
            window_start = row.pop("window_start")
            if row.pop("window_capped"):
                estimated += _estimate_window(row, since=window_start)
            del row["counted_at"]
            figures.append(ActorStats(**row, estimated=tuple(estimated)))
    return figures


def _estimate_window(row: dict, *, since) -> list[str]:
    """The window held more attempts than were read: completed and failed become the planner's
    estimates for the whole window, never below what the newest attempts counted."""
    for name, outcomes in (("completed", ["completed"]), ("failed", ["failed", "dead", "lost"])):
        estimate = queues.planned_rows(execute("history_count_estimate", {
            "actor": row["actor_name"], "queue": row["queue_name"], "outcomes": outcomes, "since": since}))
        row[name] = max(row[name], estimate if estimate > 1 else 0)  # the planner never says 0
    return ["completed", "failed"]
