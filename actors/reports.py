"""Report actors: thin transport over domain.reports.

Schedules (declared with the scheduler), in the reports' zone (LAMPLIGHTER_REPORTS_ZONE, default
UTC): reports.daily at 01:00, reports.weekly on Sundays at 02:00, reports.monthly_compliance on
the 1st at 02:30. ``period_start`` (an ISO date) builds a past period again, replacing it.
"""
from __future__ import annotations

from datetime import date

import dramatiq

from actors.files import job_files
from domain import reports
from storage import settings as settings_module
from storage.clock import SystemClock
from storage.schedules import schedule

ZONE = settings_module.get().reports.zone


def _generate(kind: str, period_start: str | None) -> dict:
    current = settings_module.get()
    return reports.generate(kind, job_files(), now=SystemClock(current.clock_offset).now(), zone=current.reports.zone,
                            period_start=date.fromisoformat(period_start) if period_start else None)


@dramatiq.actor(actor_name="reports.daily", queue_name="maintenance", priority=40, time_limit=15 * 60_000,
                max_retries=3, periodic=schedule("reports.daily", "0 1 * * *", zone=ZONE))
def daily(period_start: str | None = None) -> dict:
    return _generate("daily", period_start)


@dramatiq.actor(actor_name="reports.weekly", queue_name="maintenance", priority=40, time_limit=15 * 60_000,
                max_retries=3, periodic=schedule("reports.weekly", "0 2 * * sun", zone=ZONE))
def weekly(period_start: str | None = None) -> dict:
    return _generate("weekly", period_start)


@dramatiq.actor(actor_name="reports.monthly_compliance", queue_name="maintenance", priority=40,
                time_limit=30 * 60_000, max_retries=3,
                periodic=schedule("reports.monthly_compliance", "30 2 1 * *", zone=ZONE))
def monthly_compliance(period_start: str | None = None) -> dict:
    return _generate("monthly_compliance", period_start)
