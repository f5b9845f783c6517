"""Tenant quotas' rows (queries in sql/quotas.sql; rules in domain/quotas.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("quotas")


@dataclass(frozen=True)
class Quota:
    tenant_id: str
    max_documents: int
    max_bytes: int
    documents_used: int
    bytes_used: int
    uploads_blocked: bool
    checked_at: datetime | None
    updated_at: datetime


def ensure(tenant_id: str, *, max_documents: int, max_bytes: int) -> None:
    execute("quota_ensure", {"tenant_id": tenant_id, "max_documents": max_documents, "max_bytes": max_bytes})


def get(*, scope: TenantScope) -> list[Quota]:
    return [Quota(**r) for r in rows(execute("quota_get", scoped(scope)))]


def reserve(size_bytes: int, *, scope: TenantScope) -> Quota | None:
    """Room for one document of ``size_bytes``, taken; None when it does not fit or uploads are blocked."""
    found = rows(execute("quota_reserve", scoped(scope, size_bytes=size_bytes)))
    return Quota(**found[0]) if found else None


def set_limits(*, scope: TenantScope, max_documents: int | None, max_bytes: int | None) -> Quota | None:
    found = rows(execute("quota_set_limits", scoped(scope, max_documents=max_documents, max_bytes=max_bytes)))
    return Quota(**found[0]) if found else None


def recompute(*, scope: TenantScope) -> list[tuple[Quota, bool]]:
    """Each quota in scope recomputed from the documents, with whether uploads were blocked before."""
    out = []
    for r in rows(execute("quota_recompute", scoped(scope))):
        was_blocked = r.pop("was_blocked")
        out.append((Quota(**r), was_blocked))
    return out


def fan_out() -> list[str]:
    """One quotas.check job per tenant (at most one waiting each); the tenants."""
    return [r["tenant_id"] for r in rows(execute("quota_fan_out"))]
