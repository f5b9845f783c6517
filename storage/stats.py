"""Queue statistics per queue and actor, computed in SQL (storage/sql/stats.sql)."""
from __future__ import annotations

from dataclasses import dataclass

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
    dead: int
    oldest_waiting_age: float  # seconds
    run_ms_p50: float | None  # run time of the window's attempts
    run_ms_p95: float | None


def by_actor(*, window_seconds: float) -> list[ActorStats]:
    return [ActorStats(**row) for row in rows(execute("stats_by_actor", {"window_seconds": window_seconds}))]
