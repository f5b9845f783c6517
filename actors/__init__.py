"""The worker's entry point: `dramatiq actors` (or `lamplighter worker`).

Builds the broker and its middleware explicitly, then imports every actor module. dramatiq's
default middleware list is not used: it starts a Prometheus HTTP server on port 9191 in every
worker process; Lamplighter's metrics come from the database.
"""
from __future__ import annotations

import sys

import dramatiq
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, ShutdownNotifications, TimeLimit

from storage import logs
from storage import settings as settings_module
from storage.engine import GroupCallbacks, LamplighterBroker, Results
from storage.rate_limits import PostgresBackend, RateLimits
from storage.results import PostgresResultBackend
from storage.schedules import PeriodicSchedules

# dramatiq's Retries, extended with retry schedules and the domain's outcome vocabulary.
from actors.middleware import JobAlertOptions, Retries  # noqa: E402

try:
    settings = settings_module.get()
except settings_module.SettingsError as exc:
    print(f"lamplighter: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

logs.configure(log_format=settings.log_format, level=settings.log_level)


def build_broker(current: settings_module.Settings) -> LamplighterBroker:
    rate_limiter_backend = PostgresBackend()
    middleware = [
        AgeLimit(),
        TimeLimit(time_limit=10 * 60 * 1000),  # actors declare their own; this is the ceiling default
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=20),
        # dramatiq's results (store_results=True), group callbacks and rate limiters on PostgreSQL,
        # and `rate_limit=RateLimit(...)` on actors (README "Results, rate limits and groups").
        Results(backend=PostgresResultBackend()),
        GroupCallbacks(rate_limiter_backend),
        RateLimits(rate_limiter_backend),
        # Accepts `periodic=` (cron schedules; README "Scheduler"); never drops a message.
        PeriodicSchedules(),
        # Accepts `critical=`, `failure_threshold=`, `failure_window=` (alerts.failed_jobs).
        JobAlertOptions(),
        # Writes the per-job log lines still queued when the worker stops (storage/logs.py).
        logs.FlushLogsAtWorkerShutdown(),
    ]
    return LamplighterBroker(settings=current, middleware=middleware)


broker = build_broker(settings)
dramatiq.set_broker(broker)

# Actor modules register themselves on import; keep this list complete (tests/unit checks it).
from actors import maintenance  # noqa: E402,F401
from actors import jobs  # noqa: E402,F401
from actors import accounts, invitations  # noqa: E402,F401
from actors import audit, sessions, tokens  # noqa: E402,F401
from actors import notifications  # noqa: E402,F401
from actors import alerts, analytics, reports  # noqa: E402,F401
from actors import backups, database, licenses, monitoring  # noqa: E402,F401
from actors import integrations  # noqa: E402,F401
from actors import idempotency_keys  # noqa: E402,F401
from actors import federation  # noqa: E402,F401
from actors import billing, documents, quotas, tenants, webhooks  # noqa: E402,F401
