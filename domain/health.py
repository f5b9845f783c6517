"""The health check: is the platform doing its work? (README "Operations jobs")

Every run reads a few figures (database round trip, oldest waiting job per queue, worker
heartbeats, the scheduler's lease, free disk in embedded mode), judges each against its limit
(:func:`evaluate`, plain data in and out), stores the result, and keeps one alert per failing
check through domain/alerts.py: a failing check opens (or counts) its incident, a passing one
resolves it. Opening and resolving notify once each; repeats do not.

The check is itself a job: when workers die or the queue stalls, no new result appears. So
:func:`status` (``lamplighter health``) treats a newest result older than twice the interval as
failing, and says why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from domain import alerts
from domain.retention import until_done
from storage import health as health_rows

log = structlog.get_logger("lamplighter.health")


@dataclass(frozen=True)
class Limits:
    round_trip_ms: float = 1000.0
    queue_lag: float = 300.0  # seconds the oldest waiting job may wait
    min_free_bytes: int = 1024 ** 3


@dataclass(frozen=True)
class Figures:
    round_trip_ms: float
    queue_lags: dict[str, float]  # queue -> oldest waiting age, seconds
    workers_live: int
    workers_silent: list[dict] = field(default_factory=list)
    lease_holder: str | None = None  # None: no scheduler ever took the lease
    lease_current: bool = False
    lease_renewed_age: float | None = None
    free_disk_bytes: int | None = None  # None: not checked (not embedded)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    rule: str
    subject: tuple[str, str]
    details: dict = field(default_factory=dict)


def evaluate(figures: Figures, limits: Limits) -> list[Check]:
    """Each check's verdict on ``figures``."""
    checks = [Check("database", figures.round_trip_ms <= limits.round_trip_ms,
                    f"round trip {figures.round_trip_ms:.1f} ms (limit {limits.round_trip_ms:g} ms)",
                    "health.database", ("check", "database"), {"round_trip_ms": round(figures.round_trip_ms, 1)})]
    for queue, lag in sorted(figures.queue_lags.items()):
        checks.append(Check(f"queue:{queue}", lag <= limits.queue_lag,
                            f"oldest waiting job {lag:.0f} s (limit {limits.queue_lag:g} s)",
                            "health.queue_lag", ("queue", queue), {"oldest_waiting_s": round(lag, 1)}))
    if figures.workers_silent:
        names = ", ".join(f"{w['worker']} ({w['silent_s']} s)" for w in figures.workers_silent)
        workers = Check("workers", False, f"stopped heartbeating: {names}; {figures.workers_live} live",
                        "health.workers", ("check", "workers"),
                        {"live": figures.workers_live, "silent": figures.workers_silent})
    else:
        workers = Check("workers", figures.workers_live > 0, f"{figures.workers_live} live, all heartbeating"
                        if figures.workers_live else "no live worker", "health.workers", ("check", "workers"),
                        {"live": figures.workers_live})
    checks.append(workers)
    if figures.lease_holder is None:
        checks.append(Check("scheduler", False, "no scheduler has ever held the lease", "health.scheduler",
                            ("check", "scheduler")))
    else:
        age = f"renewed {figures.lease_renewed_age:.0f} s ago by {figures.lease_holder}"
        checks.append(Check("scheduler", figures.lease_current,
                            f"leader lease current, {age}" if figures.lease_current else f"no leader: lease expired, {age}",
                            "health.scheduler", ("check", "scheduler"),
                            {"holder": figures.lease_holder, "renewed_age_s": round(figures.lease_renewed_age or 0, 1)}))
    if figures.free_disk_bytes is not None:
        free_mib = figures.free_disk_bytes / 1024 ** 2
        checks.append(Check("disk", figures.free_disk_bytes >= limits.min_free_bytes,
                            f"{free_mib:.0f} MiB free under the data directory "
                            f"(limit {limits.min_free_bytes / 1024 ** 2:.0f} MiB)", "health.disk", ("check", "disk"),
                            {"free_bytes": figures.free_disk_bytes}))
    return checks


def gather(*, lease_seconds: float, data_dir: Path | None) -> Figures:
    """The figures, read now (``data_dir``: embedded mode's data directory, whose disk is checked)."""
    round_trip = health_rows.database_round_trip_ms()
    workers = health_rows.workers(lease_seconds=lease_seconds)
    lease = health_rows.scheduler_lease()
    return Figures(round_trip_ms=round_trip, queue_lags=health_rows.queue_lags(), workers_live=workers.live,
                   workers_silent=workers.silent, lease_holder=lease.holder if lease else None,
                   lease_current=bool(lease and lease.current), lease_renewed_age=lease.renewed_age if lease else None,
                   free_disk_bytes=health_rows.free_disk_bytes(data_dir) if data_dir is not None else None)


def check_health(figures: Figures, limits: Limits, *, retention_seconds: float,
                 audience: alerts.Audience | None = None, started: float | None = None) -> dict:
    """Judge ``figures``, open or resolve each check's alert, store the result and prune old
    ones. Returns counts for the job's history row."""
    started = time.perf_counter() if started is None else started
    checks = evaluate(figures, limits)
    opened = resolved = 0
    for check in checks:
        if check.ok:
            resolved += alerts.resolve(check.rule, check.subject, audience=audience) is not None
        else:
            opened += alerts.open_or_touch(check.rule, check.subject, {"message": check.message, **check.details},
                                           audience=audience).opened
    ok = all(c.ok for c in checks)
    health_rows.record(ok=ok, checks={c.name: {"ok": c.ok, "message": c.message} for c in checks},
                       duration_ms=(time.perf_counter() - started) * 1000.0)
    pruned, _ = until_done(lambda: health_rows.prune_batch(retention_seconds=retention_seconds), 100)
    failing = [c.name for c in checks if not c.ok]
    (log.warning if failing else log.info)("health_checked", ok=ok, failing=failing)
    return {"checks": len(checks), "failing": len(failing), "alerts_opened": opened, "alerts_resolved": resolved,
            "pruned": pruned}


@dataclass(frozen=True)
class Status:
    ok: bool
    message: str
    checked_at: datetime | None
    age_s: float | None
    checks: dict


def status(*, interval: float) -> Status:
    """The platform's health as the newest result tells it; failing when there is none, or it
    is older than twice ``interval`` (the checks themselves stopped running)."""
    latest = health_rows.latest()
    if latest is None:
        return Status(False, "no health check has run yet (is monitoring.health_check scheduled and a worker "
                             "running?)", None, None, {})
    if latest.age > 2 * interval:
        return Status(False, f"the newest health check is {latest.age / 60:.0f} min old, more than twice the "
                             f"{interval / 60:g} min interval: checks are not running (workers or the scheduler "
                             "down, or the queue stalled)", latest.checked_at, latest.age, latest.checks)
    failing = [name for name, c in latest.checks.items() if not c.get("ok")]
    message = "all checks pass" if latest.ok else f"failing: {', '.join(failing)}"
    return Status(latest.ok, message, latest.checked_at, latest.age, latest.checks)
