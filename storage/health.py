"""Health-check figures and results (queries in sql/health.sql; rules in domain/health.py)."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from storage import queues
from storage.queries import rows, runner

execute = runner("health")


@dataclass(frozen=True)
class Workers:
    live: int
    silent: list[dict]  # [{"worker": "host:pid", "silent_s": 42}]


@dataclass(frozen=True)
class SchedulerLease:
    holder: str
    current: bool
    renewed_age: float


@dataclass(frozen=True)
class HealthResult:
    id: int
    checked_at: datetime
    ok: bool
    checks: dict
    age: float  # seconds, by lamplighter.now()


def database_round_trip_ms() -> float:
    start = time.perf_counter()
    execute("health_check_latest")  # any statement: the round trip is what is measured
    return (time.perf_counter() - start) * 1000.0


def queue_lags(*, window_seconds: float = 3600.0) -> dict[str, float]:
    """Oldest waiting job's age per queue (seconds), paused queues left out."""
    return {q.queue_name: q.oldest_waiting_age for q in queues.stats(window_seconds=window_seconds) if not q.paused}


def workers(*, lease_seconds: float) -> Workers:
    [row] = rows(execute("health_workers", {"lease_seconds": lease_seconds}))
    return Workers(live=row["live"], silent=row["silent"])


def scheduler_lease() -> SchedulerLease | None:
    found = rows(execute("health_scheduler_lease"))
    return SchedulerLease(**found[0]) if found else None


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def record(*, ok: bool, checks: dict, duration_ms: float) -> tuple[int, datetime]:
    [row] = rows(execute("health_check_insert", {"ok": ok, "checks": json.dumps(checks, default=str),
                                                 "duration_ms": duration_ms}))
    return row["id"], row["checked_at"]


def latest() -> HealthResult | None:
    found = rows(execute("health_check_latest"))
    return HealthResult(**found[0]) if found else None


def prune_batch(*, retention_seconds: float, batch_size: int = 5000) -> int:
    return execute("health_check_prune_batch", {"retention_seconds": retention_seconds,
                                                "batch_size": batch_size}).rowcount
