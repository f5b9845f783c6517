"""Scopes, roles and authorize(): the one check the HTTP API and the dashboard will call
(domain/scopes.py), and what a tenant's billing status allows (domain/tenants.py). Plain data,
no database."""
from datetime import datetime, timedelta, timezone

import pytest

from domain import scopes, tenants
from domain.errors import Forbidden, InvalidInput, NotFound
from storage.tenants import TenantScope


def principal(role: str, tenant_id: str | None = None, status: str | None = "active", **limits):
    return scopes.Principal(actor="token:1", scopes=scopes.principal_scopes(scopes.scopes_of_role(role), tenant_id),
                            tenant_id=tenant_id, tenant_status=status if tenant_id else None, **limits)


def test_roles_are_named_sets_of_scopes():
    assert scopes.ROLES["viewer"] == {"read"}
    assert scopes.ROLES["operator"] == {"read", "operate"}
    assert scopes.ROLES["enqueue"] == {"enqueue"}
    assert scopes.ROLES["superadmin"] == set(scopes.SCOPES) >= {"users", "tokens", "audit", "tenants"}
    with pytest.raises(InvalidInput):
        scopes.scopes_of_role("root")


@pytest.mark.parametrize("role, allowed", [
    ("viewer", {"read"}),
    ("operator", {"read", "operate"}),
    ("enqueue", {"enqueue"}),
    ("superadmin", set(scopes.SCOPES)),
])
def test_a_platform_principal_may_use_exactly_its_roles_scopes(role, allowed):
    who = principal(role)
    for scope in scopes.SCOPES:
        if scope in allowed:
            scopes.authorize(who, scope, actor="maintenance.ping", queue="maintenance")
        else:
            with pytest.raises(Forbidden):
                scopes.authorize(who, scope, actor="maintenance.ping", queue="maintenance")


def test_a_platform_principal_sees_every_tenants_rows():
    who = principal("viewer")
    scopes.authorize(who, "read", tenant_id="acme")
    scopes.authorize(who, "read", tenant_id=None)
    assert scopes.tenant_scope(who) == TenantScope.every()


def test_a_tenant_bound_principal_gets_not_found_for_another_tenants_rows_and_platform_rows():
    who = principal("operator", tenant_id="acme")
    scopes.authorize(who, "read", tenant_id="acme")
    scopes.authorize(who, "operate", tenant_id="acme")
    with pytest.raises(NotFound):
        scopes.authorize(who, "read", tenant_id="globex")
    with pytest.raises(NotFound):
        scopes.authorize(who, "operate", tenant_id=None)  # a platform job (maintenance.prune_jobs)
    assert scopes.tenant_scope(who) == TenantScope.of("acme")
    assert scopes.tenant_scope(who).allows("acme") and not scopes.tenant_scope(who).allows("globex")
    assert not scopes.tenant_scope(who).allows(None)


def test_the_scope_is_checked_before_the_tenant():
    with pytest.raises(Forbidden):
        scopes.authorize(principal("viewer", tenant_id="acme"), "operate", tenant_id="globex")


def test_a_tenant_bound_superadmin_never_holds_a_platform_only_scope():
    who = principal("superadmin", tenant_id="acme")
    assert "tenants" not in who.scopes and {"users", "tokens", "audit"} <= who.scopes
    with pytest.raises(Forbidden):
        scopes.authorize(who, "tenants", tenant_id="acme")
    with pytest.raises(InvalidInput):
        scopes.check_scopes(["read", "tenants"], tenant_id="acme")
    assert scopes.check_scopes(["read", "tenants"], tenant_id=None) == {"read", "tenants"}


def test_an_enqueue_principal_limited_to_actors_and_queues():
    who = principal("enqueue", actors=frozenset({"reports.daily"}), queues=frozenset({"reports"}))
    scopes.authorize(who, "enqueue", actor="reports.daily", queue="reports")
    with pytest.raises(Forbidden):
        scopes.authorize(who, "enqueue", actor="maintenance.ping", queue="reports")
    with pytest.raises(Forbidden):
        scopes.authorize(who, "enqueue", actor="reports.daily", queue="maintenance")
    with pytest.raises(Forbidden):
        scopes.authorize(who, "enqueue")  # a limited principal must be told what is enqueued
    scopes.authorize(principal("enqueue"), "enqueue", actor="anything.at_all", queue="any")


@pytest.mark.parametrize("status, read, write", [
    ("active", True, True), ("grace", True, True), ("read_only", True, False), ("suspended", False, False),
])
def test_a_tenants_billing_status_limits_its_principals(status, read, write):
    who = principal("superadmin", tenant_id="acme", status=status)
    for scope, allowed in (("read", read), ("audit", read), ("operate", write), ("enqueue", write),
                           ("users", write), ("tokens", write)):
        if allowed:
            scopes.authorize(who, scope, tenant_id="acme", actor="a.b", queue="q")
        else:
            with pytest.raises(Forbidden, match=status):
                scopes.authorize(who, scope, tenant_id="acme", actor="a.b", queue="q")


def test_what_each_billing_status_allows():
    table = {s: (tenants.may_read(s), tenants.may_write(s), tenants.may_upload(s)) for s in tenants.STATUSES}
    assert table == {"active": (True, True, True), "grace": (True, True, False),
                     "read_only": (True, False, False), "suspended": (False, False, False)}
    with pytest.raises(InvalidInput):
        tenants.may_write("overdue")


def test_a_grace_period_past_its_end_counts_as_suspended():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert tenants.effective_status("grace", now + timedelta(seconds=1), now) == "grace"
    assert tenants.effective_status("grace", now, now) == "read_only"  # reads go on, writes are refused
    assert tenants.effective_status("active", None, now) == "active"
