"""Queue figures (waiting/scheduled/running/completed/failed/dead) and pause/resume."""
from __future__ import annotations

from dataclasses import dataclass

from storage.queries import queries, rows, runner

SQL = queries("queues")
execute = runner("queues")


@dataclass(frozen=True)
class QueueStats:
    queue_name: str
    waiting: int
    scheduled: int
    running: int
    completed: int
    failed: int
    dead: int
    cancelled: int
    oldest_waiting_age: float
    paused: bool


def stats(*, window_seconds: float) -> list[QueueStats]:
    found = rows(execute("queue_stats", {"window_seconds": window_seconds}))
    return [QueueStats(**{**row, "oldest_waiting_age": float(row["oldest_waiting_age"])}) for row in found]


def set_paused(name: str, paused: bool, *, by: str) -> None:
    execute("queue_set_paused", {"name": name, "paused": paused, "by": by})
