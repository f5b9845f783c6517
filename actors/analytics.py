"""Analytics actors: thin transport over domain.analytics.

Schedule (declared with the scheduler): analytics.rollup hourly at :05 UTC, for the previous hour.
"""
from __future__ import annotations

from datetime import datetime

import dramatiq
from periodiq import cron

from domain import analytics
from storage import settings as settings_module
from storage.clock import SystemClock


@dramatiq.actor(actor_name="analytics.rollup", queue_name="maintenance", priority=40, time_limit=15 * 60_000,
                max_retries=3, periodic=cron("5 * * * *"))
def rollup(hours: int = 1, hour: str | None = None) -> dict:
    """The ``hours`` full hours before now (a catch-up after an outage: ``hours=24``), or the one
    ``hour`` given as an ISO timestamp. A re-run replaces the hour."""
    return analytics.rollup(now=SystemClock(settings_module.get().clock_offset).now(), hours=hours,
                            hour=datetime.fromisoformat(hour) if hour else None)
