"""quotas.check blocks and unblocks uploads per tenant; tenants.suspend_overdue takes writes away
from tenants past their grace period and tells them once; billing.report_usage posts each tenant's
usage once, with an idempotency key per tenant and period, to a billing service on 127.0.0.1."""
import json
from datetime import date, datetime, timedelta, timezone

import pytest

import actors
from domain import quotas, tenants
from domain.errors import Forbidden
from domain.outcomes import PermanentFailure, RetryLater
from tests.cli_runs import run_cli
from tests.documents_setup import documents_env, upload  # noqa: F401 (fixture)

check = actors.quotas.check.fn
report_usage = actors.billing.report_usage.fn


def test_quota_check_blocks_at_the_limit_and_unblocks_under_it_for_its_tenant_only(documents_env, sql, monkeypatch,
                                                                                    capsys):
    for tenant in ("acme", "globex"):
        upload(tenant, "a.txt", b"12345")
        upload(tenant, "b.txt", b"12345")
    assert run_cli(monkeypatch, capsys, "documents", "quota", "acme", "--max-documents", "2")[0] == 0
    sql("UPDATE lamplighter.tenant_quotas SET max_documents = 2 WHERE tenant_id = 'globex'")
    sql("UPDATE lamplighter.tenant_quotas SET documents_used = 0, bytes_used = 0")  # drift, repaired by the check
    assert check("acme") == {"documents": 2, "bytes": 10, "blocked": 1, "changed": 1}
    assert sql("SELECT tenant_id, documents_used, uploads_blocked FROM lamplighter.tenant_quotas ORDER BY 1") == [
        ("acme", 2, True), ("globex", 0, False)]
    with pytest.raises(Forbidden, match="uploads are blocked"):
        upload("acme", "c.txt")
    assert check("acme")["changed"] == 0  # still blocked: no second audit row
    sql("UPDATE lamplighter.documents SET status = 'expired', expired_at = lamplighter.now() "
        "WHERE tenant_id = 'acme' AND name = 'a.txt'")
    assert check("acme") == {"documents": 1, "bytes": 5, "blocked": 0, "changed": 1}
    upload("acme", "c.txt")
    assert sql("SELECT action, tenant_id FROM lamplighter.audit_log WHERE action LIKE 'quota.%%' ORDER BY id") == [
        ("quota.limits_set", "acme"), ("quota.uploads_blocked", "acme"), ("quota.uploads_unblocked", "acme")]
    code, out, _ = run_cli(monkeypatch, capsys, "documents", "quota", "acme", "--json")
    assert json.loads(out)[0]["documents"] == 2
    sql("DELETE FROM dramatiq.queue")
    assert check() == {"tenants": 2}  # the hourly tick: one job per tenant
    assert sql("SELECT tenant_id FROM dramatiq.queue WHERE actor_name = 'quotas.check' ORDER BY 1") == [
        ("acme",), ("globex",)]


def test_overdue_tenants_lose_writes_and_are_notified_once(documents_env, sql, db_clock):
    now = db_clock.now()
    tenants.set_status("acme", "grace", grace_period_ends_at=now - timedelta(minutes=1), by="tests")
    tenants.set_status("globex", "grace", grace_period_ends_at=now + timedelta(days=3), by="tests")
    assert actors.tenants.suspend_overdue.fn() == {"suspended": 1}
    acme, globex = tenants.get_tenant("acme"), tenants.get_tenant("globex")
    assert (acme.billing_status, globex.billing_status) == (tenants.OVERDUE_STATUS, "grace")
    assert not tenants.may_write(acme.billing_status)
    assert actors.tenants.suspend_overdue.fn() == {"suspended": 0}
    assert sql("SELECT kind, recipient_kind, recipient, tenant_id FROM lamplighter.notifications") == [
        ("tenant.suspended", "tenant_owner", "acme", "acme")]
    with pytest.raises(Forbidden, match="may not upload"):
        upload("acme", "a.txt")


@pytest.fixture
def billing(documents_env, httpserver):
    documents_env.configure(LAMPLIGHTER_BILLING_URL=httpserver.url_for("/usage"),
                            LAMPLIGHTER_BILLING_TOKEN="bill-secret-token")
    return httpserver


def posts(httpserver) -> list[tuple[str, dict]]:
    return [(r.headers["Idempotency-Key"], json.loads(r.data)) for r, _ in httpserver.log]


def test_usage_is_posted_once_per_tenant_and_period_with_its_idempotency_key(billing, sql, db_clock):
    upload("acme", "a.txt", b"12345")
    upload("globex", "b.txt", b"123")
    today = db_clock.now().astimezone(timezone.utc).date()
    billing.expect_request("/usage", method="POST").respond_with_data("", status=503, headers={"Retry-After": "120"})
    with pytest.raises(RetryLater) as raised:
        report_usage("acme", today.isoformat())
    assert 120 <= raised.value.delay <= 132  # the service's Retry-After, spread up to 10% later
    billing.clear_all_handlers()
    billing.expect_request("/usage", method="POST").respond_with_data("{}", status=201)
    assert report_usage("acme", today.isoformat()) == {"posted": 1}  # the retry
    assert report_usage("acme", today.isoformat()) == {"posted": 0, "already_reported": 1}  # a re-run
    assert report_usage("globex", today.isoformat()) == {"posted": 1}
    sent = posts(billing)
    assert [key for key, _ in sent] == [f"usage:acme:{today}"] * 2 + [f"usage:globex:{today}"]
    assert sent[0][1] == sent[1][1] == {"tenant_id": "acme", "period": today.isoformat(), "documents_stored": 1,
                                        "bytes_stored": 5, "documents_uploaded": 1}
    assert sent[2][1]["bytes_stored"] == 3  # each tenant's own usage
    assert all(r.headers["Authorization"] == "Bearer bill-secret-token" for r, _ in billing.log)
    assert sql("SELECT tenant_id, status, attempts, response_code FROM lamplighter.billing_usage_reports "
               "ORDER BY tenant_id") == [("acme", "reported", 2, 201), ("globex", "reported", 1, 201)]


def test_usage_report_fan_out_and_a_permanent_refusal(billing, sql, db_clock):
    assert report_usage() == {"tenants": 2}
    yesterday = (db_clock.now().astimezone(timezone.utc) - timedelta(days=1)).date().isoformat()
    assert sql("SELECT tenant_id, message->'kwargs' FROM dramatiq.queue WHERE actor_name = 'billing.report_usage' "
               "ORDER BY 1") == [("acme", {"tenant_id": "acme", "period": yesterday}),
                                 ("globex", {"tenant_id": "globex", "period": yesterday})]
    assert report_usage() == {"tenants": 2}  # the same tick again: still one job per tenant and day
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE actor_name = 'billing.report_usage'") == [(2,)]
    billing.expect_request("/usage").respond_with_data("no such customer", status=422)
    with pytest.raises(PermanentFailure, match="HTTP 422"):
        report_usage("globex", yesterday)
    assert sql("SELECT status, last_error FROM lamplighter.billing_usage_reports") == [
        ("failed", f"POST {billing.url_for('/').rstrip('/')}: HTTP 422")]
    assert report_usage("globex", yesterday) == {"posted": 0, "already_failed": 1}
