"""Quota actors: thin transport over domain.quotas.

Schedule: quotas.check hourly (one job per tenant), and queued by each upload (unique per
tenant: at most one waiting).
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import quotas
from storage import quotas as quota_rows


@dramatiq.actor(actor_name="quotas.check", queue_name="documents", priority=40, time_limit=5 * 60_000,
                max_retries=3, periodic=cron("0 * * * *"))
def check(tenant_id: str | None = None) -> dict:
    if tenant_id is None:
        return {"tenants": len(quota_rows.fan_out())}
    return quotas.check(tenant_id)
