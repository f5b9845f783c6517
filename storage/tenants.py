"""Tenants (lamplighter.tenants), and the tenant scope every query of a tenant's rows takes.

A query that reads or changes rows carrying a ``tenant_id`` filters them with

    AND (%(every_tenant)s OR <table>.tenant_id = %(tenant_id)s)

and its storage function takes ``scope: TenantScope`` as a required keyword, turned into those
two parameters by :func:`scoped`. There is no default: a caller says whose rows it means, one
tenant's (``TenantScope.of("acme")``) or, for platform operators, every tenant's
(``TenantScope.every()``). A scope bound to no tenant and not "every" matches nothing, so a
mistake shows as an empty answer, never as another tenant's rows. tests/integration/
test_tenancy.py checks every named query that touches a table with a ``tenant_id`` column.

Behind that filter stands PostgreSQL's row-level security (migration 0023): a session that names
a tenant in ``lamplighter.tenant`` sees and changes only that tenant's rows of the tenants' tables,
whatever its queries say. :func:`tenant_transaction` names it for one transaction.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from storage import connection
from storage.queries import rows, runner

execute = runner("tenants")


@dataclass(frozen=True)
class TenantScope:
    """Whose rows a query may see: one tenant's, or every tenant's (platform principals)."""

    tenant_id: str | None
    every_tenant: bool = False

    @classmethod
    def of(cls, tenant_id: str) -> "TenantScope":
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ValueError(f"a tenant scope needs a tenant id, not {tenant_id!r}")
        return cls(tenant_id=tenant_id)

    @classmethod
    def every(cls) -> "TenantScope":
        return cls(tenant_id=None, every_tenant=True)

    def allows(self, tenant_id: str | None) -> bool:
        """Whether a row of ``tenant_id`` (None: a platform row) is inside this scope."""
        return self.every_tenant or (tenant_id is not None and tenant_id == self.tenant_id)


def scoped(scope: TenantScope, **params) -> dict:
    """A query's parameters with the scope's (``tenant_id``, ``every_tenant``)."""
    if not isinstance(scope, TenantScope):
        raise TypeError(f"scope must be a storage.tenants.TenantScope, not {type(scope).__name__}")
    if "tenant_id" in params or "every_tenant" in params:
        raise TypeError("tenant_id and every_tenant come from the scope")
    return {**params, "tenant_id": scope.tenant_id, "every_tenant": scope.every_tenant}


@contextlib.contextmanager
def tenant_transaction(scope: TenantScope):
    """A transaction (storage calls made in it join it) walled to ``scope``'s tenant by the
    database itself: ``lamplighter.tenant`` set with ``set_config(..., true)``, which ends with the
    transaction, so it is safe behind a transaction pooler and never reaches another request.
    ``TenantScope.every()`` gives a plain transaction (the platform sees every row). The wall
    holds for a role that is not a superuser (nor BYPASSRLS): the tables' owner included.

    It opens the transaction itself: inside one already open, the setting would outlive the
    block and wall the rest of the caller's transaction."""
    if not isinstance(scope, TenantScope):
        raise TypeError(f"scope must be a storage.tenants.TenantScope, not {type(scope).__name__}")
    if not scope.every_tenant and scope.tenant_id is None:
        raise ValueError("a scope bound to no tenant has no wall to raise: name a tenant, or every tenant")
    db = connection.init_database()
    if db.in_transaction():
        raise RuntimeError("tenant_transaction opens its own transaction, not one inside another")
    with db.atomic():
        if not scope.every_tenant:
            db.execute_sql("SELECT set_config('lamplighter.tenant', %s, true)", (scope.tenant_id,))
        yield


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    billing_status: str
    grace_period_ends_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StatusChange:
    tenant: Tenant
    previous_status: str
    previous_grace_period_ends_at: datetime | None


def insert(tenant_id: str, name: str) -> Tenant | None:
    """The new tenant, or None when the id is taken."""
    found = rows(execute("tenant_insert", {"id": tenant_id, "name": name}))
    return Tenant(**found[0]) if found else None


def get(tenant_id: str) -> Tenant | None:
    found = rows(execute("tenant_get", {"id": tenant_id}))
    return Tenant(**found[0]) if found else None


def list_all() -> list[Tenant]:
    return [Tenant(**row) for row in rows(execute("tenant_list"))]


def set_status(tenant_id: str, status: str, grace_period_ends_at: datetime | None) -> StatusChange | None:
    """None when there is no such tenant."""
    found = rows(execute("tenant_set_status", {"id": tenant_id, "status": status,
                                               "grace_period_ends_at": grace_period_ends_at}))
    if not found:
        return None
    row = found[0]
    previous = row.pop("previous_status")
    previous_end = row.pop("previous_grace_period_ends_at")
    return StatusChange(Tenant(**row), previous, previous_end)


def list_overdue() -> list[Tenant]:
    """Tenants in grace whose grace period has ended (the database's clock)."""
    return [Tenant(**row) for row in rows(execute("tenant_list_overdue"))]


def lock_if_overdue(tenant_id: str) -> Tenant | None:
    """The tenant, locked for the caller's transaction, if its grace period has (still) ended."""
    found = rows(execute("tenant_lock_if_overdue", {"id": tenant_id}))
    return Tenant(**found[0]) if found else None
