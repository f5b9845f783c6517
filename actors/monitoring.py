"""Monitoring actors: thin transport over domain.health and domain.performance.

Schedules (declared with the scheduler): monitoring.health_check every 5 minutes,
monitoring.performance every 10 minutes; both skip missed and overlapping runs (the next one
is as good). No message retries: the next run is the retry, and `lamplighter health` counts a
missing result as a failure.
"""
from __future__ import annotations

import time

import dramatiq
from periodiq import cron

from domain import health, performance
from storage import settings as settings_module
from storage.schedules import schedule


@dramatiq.actor(actor_name="monitoring.health_check", queue_name="monitoring", priority=0, time_limit=60_000,
                max_retries=0, periodic=schedule("monitoring.health_check", cron("*/5 * * * *"),
                                                 misfire="skip", overlap="skip"))
def health_check() -> dict:
    started = time.perf_counter()
    current = settings_module.get()
    ops = current.operations
    figures = health.gather(lease_seconds=current.lease_timeout,
                            data_dir=current.data_dir if current.embedded else None)
    limits = health.Limits(queue_lag=ops.health_queue_lag, min_free_bytes=ops.health_min_free_bytes)
    return health.check_health(figures, limits, retention_seconds=ops.health_retention, started=started)


@dramatiq.actor(actor_name="monitoring.performance", queue_name="monitoring", priority=10, time_limit=120_000,
                max_retries=0, periodic=schedule("monitoring.performance", cron("*/10 * * * *"),
                                                 misfire="skip", overlap="skip"))
def sample_performance() -> dict:
    ops = settings_module.get().operations
    return performance.take_sample(interval_seconds=600.0, retention_seconds=ops.perf_retention)
