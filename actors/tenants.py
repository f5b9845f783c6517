"""Tenant actors: thin transport over domain.tenants.

Schedule: tenants.suspend_overdue hourly (at minute 5).
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import tenants


@dramatiq.actor(actor_name="tenants.suspend_overdue", queue_name="maintenance", priority=30,
                time_limit=5 * 60_000, max_retries=3, periodic=cron("5 * * * *"))
def suspend_overdue() -> dict:
    return tenants.suspend_overdue()
