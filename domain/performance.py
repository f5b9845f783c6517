"""The performance monitor: per actor, how much ran, how much failed, how long it took and how
long it waited, sample by sample, kept for a retention and shown by ``lamplighter perf`` (with a
sparkline per actor) and the dashboard's charts (README "Operations jobs")."""
from __future__ import annotations

from dataclasses import dataclass

import structlog

from domain.retention import until_done
from storage import performance as perf_rows
from storage.performance import ActorSample, SystemSample

log = structlog.get_logger("lamplighter.performance")

SPARKS = "▁▂▃▄▅▆▇█"


def take_sample(*, interval_seconds: float, retention_seconds: float) -> dict:
    """Write one sample covering the time since the previous one (at most six intervals back,
    so a monitor that was down does not average over a day) and prune samples past the
    retention. Counts for the job's history row."""
    taken_at, actors = perf_rows.take_sample(default_period_seconds=interval_seconds,
                                             max_period_seconds=6 * interval_seconds)
    pruned, _ = until_done(lambda: perf_rows.prune_batch(retention_seconds=retention_seconds), 100)
    log.info("performance_sampled", actors=actors, pruned=pruned)
    return {"actors": actors, "pruned": pruned}


def sparkline(values: list[float | None]) -> str:
    """Values as block characters from lowest to highest (a gap where a value is missing)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    return "".join(" " if v is None else SPARKS[0 if span == 0 else round((v - low) / span * (len(SPARKS) - 1))]
                   for v in values)


@dataclass(frozen=True)
class ActorTrend:
    actor_name: str
    samples: int
    attempts: int
    failed: int
    per_minute: str  # sparkline of attempts a minute
    run_p95: str  # sparkline of run time p95
    last_run_p95_ms: float | None


@dataclass(frozen=True)
class PerfView:
    samples: list[ActorSample]
    trends: list[ActorTrend]
    system: list[SystemSample]


def view(*, since_seconds: float, actor: str | None = None) -> PerfView:
    """The series since ``since_seconds`` ago, and per actor its trend as sparklines."""
    samples = perf_rows.series(since_seconds=since_seconds, actor=actor)
    by_actor: dict[str, list[ActorSample]] = {}
    for sample in samples:
        by_actor.setdefault(sample.actor_name, []).append(sample)
    trends = [ActorTrend(actor_name=name, samples=len(rows), attempts=sum(r.completed + r.failed for r in rows),
                         failed=sum(r.failed for r in rows), per_minute=sparkline([r.per_minute for r in rows]),
                         run_p95=sparkline([r.run_p95_ms for r in rows]), last_run_p95_ms=rows[-1].run_p95_ms)
              for name, rows in by_actor.items()]
    return PerfView(samples=samples, trends=trends, system=perf_rows.system_series(since_seconds=since_seconds))
