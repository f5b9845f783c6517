"""Billing actors: thin transport over domain.billing.

``billing.report_usage`` uses message retries (a post to the billing service works now or later):
1 min, 5 min, 30 min, 2 h, then every 2 h, 8 attempts. The daily tick (no tenant) queues one job
per tenant for yesterday (UTC). The billing service's URL is the operator's
(LAMPLIGHTER_BILLING_URL), so the SSRF guard is off for it.

Schedule: billing.report_usage daily at 00:30 UTC.
"""
from __future__ import annotations

from datetime import date

import dramatiq
from periodiq import cron

from actors.outbound import Outbound
from domain import billing
from domain.outcomes import PermanentFailure
from storage import billing as billing_rows
from storage import settings as settings_module


@dramatiq.actor(actor_name="billing.report_usage", queue_name="billing", priority=30, time_limit=2 * 60_000,
                max_retries=7, retry_schedule=[60, 300, 1800, 7200], periodic=cron("30 0 * * *"))
def report_usage(tenant_id: str | None = None, period: str | None = None) -> dict:
    current = settings_module.get().billing
    if tenant_id is None:  # the daily tick; without a billing service there is nothing to report to
        return {"tenants": len(billing_rows.fan_out()) if current.url else 0}
    if not current.url:
        raise PermanentFailure("no billing service: LAMPLIGHTER_BILLING_URL is not set")
    if period is None:
        raise PermanentFailure("a tenant's usage report needs its period (YYYY-MM-DD)")

    def post(body: dict, idempotency_key: str) -> int:
        headers = {"Idempotency-Key": idempotency_key}
        if current.token:
            headers["Authorization"] = f"Bearer {current.token}"
        return Outbound(guard=None).post(current.url, json=body, headers=headers).status_code

    return billing.report_usage(tenant_id, date.fromisoformat(period), post=post)
