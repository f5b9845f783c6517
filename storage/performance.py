"""Performance samples (queries in sql/performance.sql; rules in domain/performance.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner

execute = runner("performance")


@dataclass(frozen=True)
class ActorSample:
    taken_at: datetime
    period_start: datetime
    actor_name: str
    queue_name: str
    completed: int
    failed: int
    failure_rate: float
    per_minute: float
    run_p50_ms: float | None
    run_p95_ms: float | None
    run_p99_ms: float | None
    wait_p50_ms: float | None
    wait_p95_ms: float | None


@dataclass(frozen=True)
class SystemSample:
    taken_at: datetime
    connections_in_use: int
    queue_depths: dict[str, int]


def take_sample(*, default_period_seconds: float, max_period_seconds: float) -> tuple[datetime, int]:
    """Write one sample (per actor, and the system's); returns its time and the actors covered."""
    [row] = rows(execute("perf_take_sample", {"default_period_seconds": default_period_seconds,
                                              "max_period_seconds": max_period_seconds}))
    return row["taken_at"], row["actors"]


def series(*, since_seconds: float, actor: str | None = None) -> list[ActorSample]:
    return [ActorSample(**row) for row in rows(execute("perf_series", {"since_seconds": since_seconds,
                                                                       "actor": actor}))]


def system_series(*, since_seconds: float) -> list[SystemSample]:
    return [SystemSample(**row) for row in rows(execute("perf_system_series", {"since_seconds": since_seconds}))]


def prune_batch(*, retention_seconds: float, batch_size: int = 5000) -> int:
    params = {"retention_seconds": retention_seconds, "batch_size": batch_size}
    return execute("perf_prune_batch", params).rowcount + execute("perf_system_prune_batch", params).rowcount
