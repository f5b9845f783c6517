"""The figures /metrics reports, read from the database (queries in sql/metrics.sql).

Every figure is global (the database's, not this process's), so any web process answers a scrape
with the same values. The outcome counters come from lamplighter.job_counters, which the finish
statement keeps (migration 0012), never from the pruned history.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from storage.queries import rows, runner, transaction

execute = runner("metrics")


@dataclass(frozen=True)
class QueueDepth:
    queue_name: str
    waiting: int
    scheduled: int
    running: int
    dead: int
    oldest_waiting_age: float  # seconds; 0 when nothing waits
    paused: bool


@dataclass(frozen=True)
class OutcomeCount:
    """Attempts of an actor that ended with ``outcome`` and took a run time in ``bucket`` (how
    many of ``Snapshot.run_time_bounds`` are at or below it)."""

    actor_name: str
    outcome: str
    bucket: int
    attempts: int
    run_seconds: float


@dataclass(frozen=True)
class Snapshot:
    queues: list[QueueDepth]
    workers_live: int
    workers_stopping: int
    leader: str | None  # holder of the current scheduler lease; None when no lease is current
    lease_age: float | None  # seconds since the lease row was last renewed; None without a row
    open_alerts: dict[str, int]  # rule -> open incidents
    counts: list[OutcomeCount]
    run_time_bounds: list[float]  # seconds, ascending: the histogram's finite "le" bounds


def leader(*, lease_seconds: float) -> str | None:
    """The scheduler holding a current lease, if any: the snapshot's ``leader`` without counting
    the queues (the dashboard's overview shows it beside figures of its own)."""
    [platform] = rows(execute("metrics_platform", {"lease_seconds": lease_seconds}))
    return platform["leader"] if platform["leader_current"] else None


def snapshot(*, lease_seconds: float, time_limit_seconds: float = 5.0) -> Snapshot:
    """Everything /metrics reports, in one transaction of at most ``time_limit_seconds`` per
    statement. ``lease_seconds``: how recent a worker's heartbeat must be for it to count as live
    (the workers' lease)."""
    with transaction():
        execute("metrics_time_limit", {"milliseconds": int(time_limit_seconds * 1000)})
        queues = [QueueDepth(**row) for row in rows(execute("metrics_queue_depths"))]
        [platform] = rows(execute("metrics_platform", {"lease_seconds": lease_seconds}))
        counts = [OutcomeCount(**row) for row in rows(execute("metrics_job_counters"))]
        [(bounds,)] = execute("metrics_run_time_bounds").fetchall()
    alerts = platform["open_alerts"]
    return Snapshot(
        queues=queues, workers_live=platform["workers_live"], workers_stopping=platform["workers_stopping"],
        leader=platform["leader"] if platform["leader_current"] else None, lease_age=platform["lease_age"],
        open_alerts={rule: int(n) for rule, n in (json.loads(alerts) if isinstance(alerts, str) else alerts).items()},
        counts=counts, run_time_bounds=[float(b) for b in bounds])
