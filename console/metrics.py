"""Prometheus ``/metrics``, built from the database on every scrape (README "/metrics").

Nothing is counted in this process: each scrape reads one :func:`storage.metrics.snapshot` and
turns it into metric families through a collector registered on a registry of its own, so every
web process answers with the same global values, and a restart resets nothing. Outcome counters
and run-time histograms come from lamplighter.job_counters, which the finish statement keeps:
they never go down when the history is pruned.

``router`` serves ``GET /metrics``; the web app mounts it. Scrapes run one at a time on a thread
of their own (one database connection per process, whatever the request concurrency).
"""
from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor

import peewee
import psycopg2
import structlog
from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from domain import scopes, tokens
from domain.errors import Forbidden, NotFound, Unauthenticated
from storage import connection
from storage import metrics as figures
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.metrics")

# The outcomes of an attempt (lamplighter.job_history.outcome; README "How a job ends"): returned,
# raised RetryLater or an error with attempts left, dead (PermanentFailure or out of attempts),
# Cancel, and lost with a worker that stopped heartbeating. Every actor that has a count shows
# all five, zeros included, so that rate() sees a series' first increase.
OUTCOMES = ("completed", "failed", "dead", "cancelled", "lost")
QUEUE_STATES = ("waiting", "scheduled", "running", "dead")


class SnapshotCollector:
    """The metric families of one database snapshot (a custom collector: prometheus_client
    asks it on the scrape, nothing is kept between scrapes)."""

    def __init__(self, snap: figures.Snapshot):
        self.snap = snap

    def collect(self):
        snap = self.snap
        depth = GaugeMetricFamily("lamplighter_queue_jobs", "Jobs per queue and state: waiting (available now), "
                                  "scheduled (available later), running, dead.", labels=["queue", "state"])
        oldest = GaugeMetricFamily("lamplighter_queue_oldest_waiting_seconds",
                                   "Age of the oldest job available to run and not yet claimed (0: none).",
                                   labels=["queue"])
        paused = GaugeMetricFamily("lamplighter_queue_paused", "1 if the queue is paused.", labels=["queue"])
        for queue in snap.queues:
            for state in QUEUE_STATES:
                depth.add_metric([queue.queue_name, state], getattr(queue, state))
            oldest.add_metric([queue.queue_name], queue.oldest_waiting_age)
            paused.add_metric([queue.queue_name], int(queue.paused))
        yield from (depth, oldest, paused)

        yield GaugeMetricFamily("lamplighter_workers_live", "Worker processes with a heartbeat within the lease.",
                                value=snap.workers_live)
        yield GaugeMetricFamily("lamplighter_workers_stopping", "Live worker processes that are shutting down.",
                                value=snap.workers_stopping)

        yield GaugeMetricFamily("lamplighter_scheduler_has_leader", "1 if a scheduler holds a current lease.",
                                value=int(snap.leader is not None))
        leader = GaugeMetricFamily("lamplighter_scheduler_leader", "1 for the scheduler process holding the "
                                   "current lease (no series without one).", labels=["holder"])
        if snap.leader is not None:
            leader.add_metric([snap.leader], 1)
        yield leader
        if snap.lease_age is not None:
            yield GaugeMetricFamily("lamplighter_scheduler_lease_age_seconds",
                                    "Seconds since the scheduler lease was last renewed (renewed every "
                                    "LAMPLIGHTER_SCHEDULER_POLL_INTERVAL by a live leader).", value=snap.lease_age)

        alerts = GaugeMetricFamily("lamplighter_alerts_open", "Open alert incidents per rule.", labels=["rule"])
        for rule, count in sorted(snap.open_alerts.items()):
            alerts.add_metric([rule], count)
        yield alerts

        yield from _outcome_families(snap.counts, snap.run_time_bounds)


def _outcome_families(counts: list[figures.OutcomeCount], bounds: list[float]):
    outcomes = CounterMetricFamily("lamplighter_job_outcomes", "Attempts finished, per actor and outcome "
                                   "(completed, failed and retried, dead, cancelled, lost). Never decreases.",
                                   labels=["actor", "outcome"])
    run_time = HistogramMetricFamily("lamplighter_job_run_seconds", "Run time of finished attempts, per actor "
                                     "and outcome. Never decreases.", labels=["actor", "outcome"])
    per_bucket: dict[tuple[str, str], list[int]] = {}  # attempts by bucket index 0..len(bounds)
    run_seconds: dict[tuple[str, str], float] = {}
    for count in counts:
        key = (count.actor_name, count.outcome)
        per_bucket.setdefault(key, [0] * (len(bounds) + 1))[min(max(count.bucket, 0), len(bounds))] += count.attempts
        run_seconds[key] = run_seconds.get(key, 0.0) + count.run_seconds
    for actor in sorted({actor for actor, _ in per_bucket}):
        for outcome in OUTCOMES:
            outcomes.add_metric([actor, outcome], sum(per_bucket.get((actor, outcome), ())))
    for key in sorted(per_bucket):
        # Bucket index j holds run times in [bounds[j-1], bounds[j]): "le bounds[k]" sums j <= k.
        cumulative = list(itertools.accumulate(per_bucket[key]))
        buckets = [(floatToGoString(bound), n) for bound, n in zip(bounds, cumulative)]
        run_time.add_metric(list(key), buckets + [("+Inf", cumulative[-1])], run_seconds[key])
    yield outcomes
    yield run_time


def exposition(snap: figures.Snapshot | None = None) -> bytes:
    """The Prometheus text exposition of ``snap`` (by default, the database's figures now)."""
    if snap is None:
        snap = figures.snapshot(lease_seconds=settings_module.get().lease_timeout)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry)


# ---- the route ----------------------------------------------------------------------------------

_scrapes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers or None)


def _refusal(authorization: str | None) -> JSONResponse | None:
    scheme, _, secret = (authorization or "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("a bearer token with the read scope is needed")
        principal = tokens.authenticate(secret.strip(), source="metrics")
        # Platform-wide figures: a token bound to a tenant is refused like any platform row.
        scopes.authorize(principal, "read")
    except Unauthenticated as exc:
        return _error(401, "unauthenticated", str(exc), **{"WWW-Authenticate": "Bearer"})
    except Forbidden as exc:
        return _error(403, "forbidden", str(exc))
    except NotFound:
        return _error(404, "not_found", "no route for GET /metrics")
    return None


async def _on_scrape_thread(function, *args):
    return await asyncio.wrap_future(_scrapes.submit(_guarded, function, *args))


def _guarded(function, *args):
    # The scrape thread keeps its connection between scrapes: one the server closed meanwhile
    # (a restart, a terminated backend) is replaced first, as the web's pool does, not a 503.
    connection.drop_closed_connections()
    try:
        return function(*args)
    except (peewee.PeeweeException, psycopg2.Error, connection.DatabaseUnavailable) as exc:
        # The next scrape connects afresh; host and user stay in the log, redacted.
        try:
            connection.database.close()
        except (peewee.PeeweeException, psycopg2.Error):
            pass
        detail = settings_module.redact_url((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        log.warning("metrics_database_unreachable", error=detail)
        return _error(503, "database_unreachable", "database unreachable")


async def require_read(authorization: str | None = Header(default=None)) -> Response | None:
    """The scrape's check: a bearer API token with the ``read`` scope, not bound to a tenant.
    Returns the refusal to send, or None. An app with its own authentication mounts the router
    with it and overrides this (``app.dependency_overrides[metrics.require_read]``)."""
    return await _on_scrape_thread(_refusal, authorization)


router = APIRouter()


@router.get("/metrics", response_class=Response, summary="Prometheus metrics from the database",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(refusal: Response | None = Depends(require_read)) -> Response:
    if refusal is not None:
        return refusal
    body = await _on_scrape_thread(exposition)
    if isinstance(body, Response):
        return body
    return Response(body, media_type=CONTENT_TYPE_LATEST)
