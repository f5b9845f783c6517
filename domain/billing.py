"""Usage reporting to the billing service: each tenant's usage for a period (a UTC day), posted
once with an idempotency key per tenant and period (``usage:<tenant>:<day>``).

The report is measured the first time it is asked for and kept (lamplighter.billing_usage_
reports), so a retried post, a re-run of the daily job or a second worker sends the same body
under the same key, and a report marked ``reported`` is not posted again: a re-run never bills
twice, and a post whose answer was lost is recognised by the billing service from its key.
Transient errors (network, 408/429/5xx) are the outcome ``RetryLater`` from the ``post`` port,
and the actor's retry policy times the next attempt; other refusals fail the report for good.
"""
from __future__ import annotations

from datetime import date
from typing import Callable

import structlog

from domain.outcomes import JobOutcome, PermanentFailure
from storage import billing as billing_rows

log = structlog.get_logger("lamplighter.billing")

ERROR_LIMIT = 1000
# (body, idempotency key) -> the billing service's status code; raises RetryLater/PermanentFailure.
Post = Callable[[dict, str], int]


def report_usage(tenant_id: str, period: date, *, post: Post) -> dict[str, int]:
    report = billing_rows.prepare(tenant_id, period)
    if report.status != "pending":
        return {"posted": 0, "already_" + report.status: 1}
    report = billing_rows.begin_attempt(tenant_id, period)
    if report is None:  # reported meanwhile by another run
        return {"posted": 0, "already_reported": 1}
    body = {"tenant_id": tenant_id, "period": period.isoformat(), "documents_stored": report.documents_stored,
            "bytes_stored": report.bytes_stored, "documents_uploaded": report.documents_uploaded}
    try:
        status = post(body, report.idempotency_key)
    except JobOutcome as exc:
        final = isinstance(exc, PermanentFailure)
        billing_rows.record(tenant_id, period, status="failed" if final else "pending", response_code=None,
                            error=str(exc)[:ERROR_LIMIT])
        log.warning("billing_report_failed", tenant_id=tenant_id, period=period.isoformat(), final=final,
                    attempt=report.attempts, error=str(exc))
        raise
    billing_rows.record(tenant_id, period, status="reported", response_code=status, error=None)
    log.info("billing_usage_reported", tenant_id=tenant_id, period=period.isoformat(), attempt=report.attempts,
             **{k: v for k, v in body.items() if k not in ("tenant_id", "period")})
    return {"posted": 1}

