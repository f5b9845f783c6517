"""Tenant quotas: how many documents and bytes a tenant may keep, and whether it may upload.

An upload reserves its room at once (:func:`reserve`, one conditional UPDATE, so concurrent
uploads cannot overrun a limit). ``quotas.check`` (:func:`check`) recomputes each tenant's usage
from its documents that are not expired, blocks uploads at or over a limit and unblocks them
under both; each change of the block is an audit row.
"""
from __future__ import annotations

import structlog

from domain import audit
from domain.errors import Forbidden, InvalidInput, NotFound
from storage import quotas as quota_rows
from storage import settings as settings_module
from storage.queries import transaction
from storage.quotas import Quota
from storage.tenants import TenantScope

log = structlog.get_logger("lamplighter.quotas")


class QuotaExceeded(Forbidden):
    """The upload does not fit the tenant's quota, or its uploads are blocked."""


def ensure(tenant_id: str) -> Quota:
    """The tenant's quota, created with the configured defaults on first use."""
    defaults = settings_module.get().documents
    quota_rows.ensure(tenant_id, max_documents=defaults.max_documents, max_bytes=defaults.max_bytes)
    [quota] = quota_rows.get(scope=TenantScope.of(tenant_id))
    return quota


def refuse_if_full(tenant_id: str, size_bytes: int) -> None:
    """QuotaExceeded now, before an upload's bytes travel to the file store, when the tenant's
    uploads are blocked or the document cannot fit; :func:`reserve` decides for good."""
    quota = ensure(tenant_id)
    if quota.uploads_blocked or (quota.documents_used + 1 > quota.max_documents
                                 or quota.bytes_used + size_bytes > quota.max_bytes):
        _refuse(tenant_id, quota, size_bytes)


def _refuse(tenant_id: str, quota: Quota, size_bytes: int):
    if quota.uploads_blocked:
        raise QuotaExceeded(f"tenant {tenant_id!r}: uploads are blocked (quota reached: {quota.documents_used} of "
                            f"{quota.max_documents} documents, {quota.bytes_used} of {quota.max_bytes} bytes)")
    raise QuotaExceeded(f"tenant {tenant_id!r}: a document of {size_bytes} bytes does not fit the quota "
                        f"({quota.documents_used} of {quota.max_documents} documents, {quota.bytes_used} of "
                        f"{quota.max_bytes} bytes)")


def reserve(tenant_id: str, size_bytes: int) -> Quota:
    """Take room for one document (in the caller's transaction), or refuse with QuotaExceeded."""
    ensure(tenant_id)
    taken = quota_rows.reserve(size_bytes, scope=TenantScope.of(tenant_id))
    if taken is None:
        [quota] = quota_rows.get(scope=TenantScope.of(tenant_id))
        _refuse(tenant_id, quota, size_bytes)
    return taken


def check(tenant_id: str) -> dict[str, int]:
    """Recompute the tenant's usage, block or unblock its uploads; counts for the history row."""
    ensure(tenant_id)
    with transaction():
        [(quota, was_blocked)] = quota_rows.recompute(scope=TenantScope.of(tenant_id))
        if quota.uploads_blocked != was_blocked:
            action = "quota.uploads_blocked" if quota.uploads_blocked else "quota.uploads_unblocked"
            audit.record("system:quotas.check", action, target_type="tenant", target_id=tenant_id,
                         tenant_id=tenant_id, details=_usage(quota))
            log.info(action.replace(".", "_"), tenant_id=tenant_id, **_usage(quota))
    return {"documents": quota.documents_used, "bytes": quota.bytes_used, "blocked": int(quota.uploads_blocked),
            "changed": int(quota.uploads_blocked != was_blocked)}


def set_limits(tenant_id: str, *, max_documents: int | None, max_bytes: int | None, by: str) -> Quota:
    """New limits for a tenant (the block follows at the next check)."""
    for name, value in (("max documents", max_documents), ("max bytes", max_bytes)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidInput(f"{name} must be a whole number, zero or more")
    from domain import tenants

    tenants.get_tenant(tenant_id)
    ensure(tenant_id)
    with transaction():
        quota = quota_rows.set_limits(scope=TenantScope.of(tenant_id), max_documents=max_documents,
                                      max_bytes=max_bytes)
        if quota is None:
            raise NotFound(f"no quota for tenant {tenant_id!r}")
        audit.record(by, "quota.limits_set", target_type="tenant", target_id=tenant_id, tenant_id=tenant_id,
                     details={"max_documents": quota.max_documents, "max_bytes": quota.max_bytes})
    return quota


def _usage(quota: Quota) -> dict[str, int]:
    return {"documents_used": quota.documents_used, "max_documents": quota.max_documents,
            "bytes_used": quota.bytes_used, "max_bytes": quota.max_bytes}
