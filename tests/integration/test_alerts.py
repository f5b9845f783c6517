"""Alerts as incidents against a real PostgreSQL, notified through the outbox to a real SMTP
server and an HTTP receiver on 127.0.0.1: open once, count repeats, notify on open and on
resolve, a new incident after resolution, concurrent firings, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

import actors
from domain import alerts
from domain.notifications import Recipient
from storage import connection
from storage import notifications as notification_rows
from tests.conftest import LOOPBACK, lamplighter_env, use_database
from tests.smtp_server import smtp_server  # noqa: F401  (fixture)

RULE = "jobs.failure_rate"
OPS = alerts.Audience(email=(Recipient.address("ops@example.org"),))


def outbox(sql, kind=None):
    return sql("SELECT kind, recipient, dedupe_key FROM lamplighter.notifications "
               "WHERE %(kind)s::text IS NULL OR kind = %(kind)s ORDER BY id", {"kind": kind})


def test_an_alert_opens_once_counts_repeats_and_notifies_on_open_and_on_resolve(database_url, sql):
    first = alerts.open_or_touch(RULE, ("queue", "accounts"), {"failed": 3}, audience=OPS)
    assert first.opened and first.alert.count == 1
    for failed in (5, 8):
        again = alerts.open_or_touch(RULE, "queue:accounts", {"failed": failed}, audience=OPS)
        assert not again.opened and again.alert.id == first.alert.id
    [alert] = alerts.list_alerts(open_only=True)
    assert (alert.count, alert.details, alert.resolved_at) == (3, {"failed": 8}, None)
    assert alert.last_seen_at > alert.opened_at
    assert [(k, r) for k, r, _ in outbox(sql)] == [("alert.opened", "ops@example.org")]

    resolved = alerts.resolve(RULE, ("queue", "accounts"), audience=OPS)
    assert resolved.id == alert.id and resolved.resolved_by == f"system:{RULE}"
    assert alerts.resolve(RULE, ("queue", "accounts"), audience=OPS) is None  # nothing open: no second notice
    assert [k for k, _, _ in outbox(sql)] == ["alert.opened", "alert.resolved"]
    [(_, _, body)] = sql("SELECT kind, subject, body_text FROM lamplighter.notifications WHERE kind = 'alert.resolved'")
    assert "after 3 firing(s)" in body

    # It fires again after resolution: a new incident, told again.
    reopened = alerts.open_or_touch(RULE, ("queue", "accounts"), audience=OPS)
    assert reopened.opened and reopened.alert.id != alert.id
    assert [k for k, _, _ in outbox(sql)] == ["alert.opened", "alert.resolved", "alert.opened"]
    # Other subjects and rules are incidents of their own.
    assert alerts.open_or_touch(RULE, ("queue", "maintenance"), audience=OPS).opened
    assert alerts.open_or_touch("health.database", ("check", "accounts"), audience=OPS).opened


def test_concurrent_firings_open_one_incident_and_count_every_one(database_url, sql):
    barrier = threading.Barrier(8)
    touches, errors = [], []

    def fire():
        try:
            barrier.wait(timeout=10)
            touches.append(alerts.open_or_touch(RULE, ("actor", "accounts.retry"), {"n": 1}, audience=OPS))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.init_database().close()

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(t.opened for t in touches) == 1 and len({t.alert.id for t in touches}) == 1
    assert sql("SELECT count(*), max(count) FROM lamplighter.alerts") == [(1, 8)]
    assert len(outbox(sql, "alert.opened")) == 1


def test_the_audience_hears_by_email_and_webhook(database_url, smtp_server, httpserver, sql):  # noqa: F811
    use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url(), LAMPLIGHTER_SMTP_FROM="ll@example.org",
                 LAMPLIGHTER_ALERT_RECIPIENTS="address:ops@example.org,address:oncall@example.org",
                 LAMPLIGHTER_ALERT_WEBHOOK_URL=httpserver.url_for("/services/T1/B1/secret"),
                 LAMPLIGHTER_ALERT_WEBHOOK_FORMAT="slack", LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    httpserver.expect_request("/services/T1/B1/secret", method="POST").respond_with_data("ok")
    touch = alerts.open_or_touch("health.database", ("check", "primary"), {"latency_ms": 950})
    rows = notification_rows.list_notifications()
    assert sorted((n.channel, n.recipient) for n in rows) == [
        ("email", "oncall@example.org"), ("email", "ops@example.org"),
        ("webhook", httpserver.url_for("/services/T1/B1/secret"))]
    assert all("secret" not in n.dedupe_key for n in rows)
    for n in rows:
        assert actors.notifications.deliver.fn(n.id)["status"] == "delivered"
    mails = smtp_server.mailbox.received
    assert sorted(m.rcpt_tos[0] for m in mails) == ["oncall@example.org", "ops@example.org"]
    assert {m.message["Subject"] for m in mails} == {"Alert: health.database on check primary"}
    assert f"alerts resolve {touch.alert.id}" in mails[0].message.get_body(("plain",)).get_content()
    [(request, _)] = httpserver.log
    assert request.get_json()["text"].startswith("*Alert: health.database on check primary*\n")


def test_default_audience_is_the_platform_superadmins(database_url, smtp_server, sql):  # noqa: F811
    use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url(), LAMPLIGHTER_SMTP_FROM="ll@example.org")
    sql("INSERT INTO lamplighter.tenants (id, name) VALUES ('acme', 'Acme')")
    sql("INSERT INTO lamplighter.users (email, display_name, role, tenant_id) VALUES "
        "('ada@example.org', 'Ada', 'superadmin', NULL), ('ops@example.org', 'Ops', 'operator', NULL), "
        "('dora@acme.example', 'Dora', 'superadmin', 'acme')")
    alerts.open_or_touch(RULE, ("queue", "q"))
    assert [(k, r) for k, r, _ in outbox(sql)] == [("alert.opened", "superadmin")]
    [notice] = notification_rows.list_notifications()
    assert (notice.recipient_kind, notice.tenant_id) == ("role", None)
    actors.notifications.deliver.fn(notice.id)
    assert [m.rcpt_tos for m in smtp_server.mailbox.received] == [["ada@example.org"]]


@pytest.mark.parametrize("rule,subject", [("Jobs Failure", ("queue", "q")), (RULE, ("Queue!", "q")),
                                          (RULE, ("queue", "")), (RULE, "no-kind"), (RULE, ("queue", "a\nb"))])
def test_malformed_rules_and_subjects_are_refused(database_url, rule, subject):
    with pytest.raises(alerts.InvalidAlert):
        alerts.open_or_touch(rule, subject, audience=OPS)


def test_cli_lists_alerts_and_resolves_one_by_hand(database_url, sql):
    opened = alerts.open_or_touch(RULE, ("queue", "accounts"), {"failed": 4}, audience=OPS).alert
    closed = alerts.open_or_touch("health.database", ("check", "primary"), audience=OPS).alert
    alerts.resolve("health.database", ("check", "primary"), audience=OPS)
    env = lamplighter_env(DATABASE_URL=database_url, LAMPLIGHTER_ALERT_RECIPIENTS="address:ops@example.org")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "console", "alerts", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    everything = cli("--json")
    assert everything.returncode == 0, everything.stderr
    assert [(a["id"], a["state"]) for a in json.loads(everything.stdout)] == [(closed.id, "resolved"),
                                                                             (opened.id, "open")]
    open_only = cli("--open")
    assert open_only.returncode == 0 and open_only.stdout.startswith("ID")
    assert len(open_only.stdout.splitlines()) == 2 and "queue:accounts" in open_only.stdout

    resolved = cli("resolve", str(opened.id))
    assert resolved.returncode == 0, resolved.stderr
    assert f"alert {opened.id} (jobs.failure_rate on queue:accounts) resolved" in resolved.stdout
    [alert] = [a for a in alerts.list_alerts() if a.id == opened.id]
    assert alert.resolved_by.startswith("cli:")
    [(actor, target, details)] = sql("SELECT actor, target_id, details FROM lamplighter.audit_log "
                                     "WHERE action = 'alert.resolved'")
    assert (actor, target) == (alert.resolved_by, str(alert.id))
    assert details == {"rule": RULE, "subject": "queue:accounts", "count": 1}
    assert '"event": "alert_resolved_by_hand"' in resolved.stderr and alert.resolved_by in resolved.stderr
    assert [k for k, _, _ in outbox(sql)][-1] == "alert.resolved"

    again = cli("resolve", str(opened.id))
    assert again.returncode == 1 and "already resolved" in again.stderr
    missing = cli("resolve", "999")
    assert missing.returncode == 1 and "no alert 999" in missing.stderr
