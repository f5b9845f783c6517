"""Usage reports' rows (queries in sql/billing.sql; rules in domain/billing.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("billing")


@dataclass(frozen=True)
class UsageReport:
    tenant_id: str
    period: date
    idempotency_key: str
    documents_stored: int
    bytes_stored: int
    documents_uploaded: int
    status: str
    attempts: int
    response_code: int | None
    last_error: str | None
    created_at: datetime
    reported_at: datetime | None


def fan_out() -> list[tuple[str, date]]:
    """One billing.report_usage job per tenant for yesterday (UTC); (tenant, period) pairs."""
    return [(r["tenant_id"], r["period"]) for r in rows(execute("billing_fan_out"))]


def prepare(tenant_id: str, period: date) -> UsageReport:
    """The tenant's report for ``period``, measured on first call and kept as it was."""
    execute("billing_report_prepare", {"tenant_id": tenant_id, "period": period.isoformat()})
    [row] = rows(execute("billing_report_get", scoped(TenantScope.of(tenant_id), period=period.isoformat())))
    return UsageReport(**row)


def begin_attempt(tenant_id: str, period: date) -> UsageReport | None:
    found = rows(execute("billing_report_begin_attempt", scoped(TenantScope.of(tenant_id), period=period.isoformat())))
    return UsageReport(**found[0]) if found else None


def record(tenant_id: str, period: date, *, status: str, response_code: int | None, error: str | None) -> None:
    execute("billing_report_record", scoped(TenantScope.of(tenant_id), period=period.isoformat(), status=status,
                                            response_code=response_code, error=error))


def list_reports(*, scope: TenantScope, limit: int = 50) -> list[UsageReport]:
    return [UsageReport(**r) for r in rows(execute("billing_report_list", scoped(scope, limit=limit)))]
