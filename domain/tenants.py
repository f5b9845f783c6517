"""Tenants and what their billing status allows. Every module that asks "may this tenant
write? upload?" asks here; none compares status strings itself.

    status      read  write  upload
    active       yes   yes    yes
    grace        yes   yes    no     (payment overdue: nothing breaks, nothing new is stored)
    read_only    yes   no     no
    suspended    no    no     no

A grace period that has ended counts as read-only (:func:`effective_status`): reads go on, writes
and uploads are refused, whether or not the job that marks such tenants (tenants.suspend_overdue)
has run yet. Only an operator suspends a tenant outright.
"""
from __future__ import annotations

import re
from datetime import datetime

import structlog

from domain import audit
from domain.errors import Conflict, InvalidInput, NotFound
from storage import connection
from storage import tenants as tenant_rows
from storage.tenants import Tenant

log = structlog.get_logger("lamplighter.tenants")

STATUSES = ("active", "grace", "read_only", "suspended")
_RIGHTS = {
    "active": frozenset({"read", "write", "upload"}),
    "grace": frozenset({"read", "write"}),
    "read_only": frozenset({"read"}),
    "suspended": frozenset(),
}
_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def effective_status(status: str, grace_period_ends_at: datetime | None, now: datetime) -> str:
    """The status that counts now: a grace period past its end is read-only."""
    if status == "grace" and grace_period_ends_at is not None and grace_period_ends_at <= now:
        return OVERDUE_STATUS
    return status


def _rights(status: str) -> frozenset[str]:
    try:
        return _RIGHTS[status]
    except KeyError:
        raise InvalidInput(f"unknown billing status {status!r} (one of {', '.join(STATUSES)})") from None


def may_read(status: str) -> bool:
    return "read" in _rights(status)


def may_write(status: str) -> bool:
    return "write" in _rights(status)


def may_upload(status: str) -> bool:
    return "upload" in _rights(status)


def check_tenant_id(tenant_id: str) -> str:
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise InvalidInput(f"tenant id {tenant_id!r}: use 1 to 63 lowercase letters, digits, '-' or '_', "
                           "starting with a letter or digit")
    return tenant_id


def create_tenant(tenant_id: str, name: str, *, by: str, source: str | None = None) -> Tenant:
    check_tenant_id(tenant_id)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a tenant needs a name")
    with connection.transaction():
        tenant = tenant_rows.insert(tenant_id, name.strip())
        if tenant is None:
            raise Conflict(f"tenant {tenant_id!r} already exists")
        audit.record(by, "tenant.created", target_type="tenant", target_id=tenant.id, tenant_id=tenant.id,
                     source=source, details={"name": tenant.name})
    log.info("tenant_created", tenant_id=tenant.id, by=by)
    return tenant


def get_tenant(tenant_id: str) -> Tenant:
    tenant = tenant_rows.get(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return tenant


def list_tenants() -> list[Tenant]:
    return tenant_rows.list_all()


def set_status(tenant_id: str, status: str, *, grace_period_ends_at: datetime | None = None, by: str,
               source: str | None = None) -> Tenant:
    """A new billing status; ``grace`` needs the end of its grace period, the others take none."""
    _rights(status)
    if (status == "grace") != (grace_period_ends_at is not None):
        raise InvalidInput("a grace period needs its end (and only grace has one)")
    with connection.transaction():
        change = tenant_rows.set_status(tenant_id, status, grace_period_ends_at)
        if change is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        details = {"from": change.previous_status, "to": status}
        if grace_period_ends_at is not None:
            details["grace_period_ends_at"] = grace_period_ends_at.isoformat()
        audit.record(by, "tenant.status_changed", target_type="tenant", target_id=tenant_id, tenant_id=tenant_id,
                     source=source, details=details)
    log.info("tenant_status_changed", tenant_id=tenant_id, previous=change.previous_status, status=status, by=by)
    return change.tenant


# What a tenant whose grace period ended becomes (tenants.suspend_overdue): read-only, the status
# effective_status() already gives such a tenant, so nothing it may do changes when the job runs.
OVERDUE_STATUS = "read_only"


def suspend_overdue() -> dict[str, int]:
    """Tenants in grace past its end lose the right to write (OVERDUE_STATUS), each with an audit
    row and one notice to its owners through the outbox (dedupe key per grace period), in one
    transaction per tenant."""
    from domain.notifications import Recipient, notify

    suspended = 0
    for listed in tenant_rows.list_overdue():
        with connection.transaction():
            tenant = tenant_rows.lock_if_overdue(listed.id)
            if tenant is None:  # paid (or changed by an operator) since the list was read
                continue
            ended = tenant.grace_period_ends_at
            set_status(tenant.id, OVERDUE_STATUS, by="system:tenants.suspend_overdue")
            notify(Recipient.tenant_owner(tenant.id), kind="tenant.suspended", tenant_id=tenant.id,
                   dedupe_key=f"tenant:{tenant.id}:suspended:{ended.isoformat()}",
                   subject=f"{tenant.name}: your workspace is now {OVERDUE_STATUS.replace('_', '-')}",
                   text=(f"The payment grace period of {tenant.name} ended on {ended:%Y-%m-%d %H:%M} UTC. "
                         "New documents and changes are refused until the account is settled."))
        suspended += 1
    return {"suspended": suspended}
