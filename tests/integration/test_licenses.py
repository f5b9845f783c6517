"""licenses.check against a real PostgreSQL with the database's clock moved day by day: the 30,
7 and 1-day notices go out once each however often the check runs, the license is marked expired
(and its owners told once), and seat over-use opens one alert that resolves."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import actors
from storage import licenses as license_rows
from storage.tenants import TenantScope

EXPIRES = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_notices_at_30_7_and_1_days_once_each_then_expired(database_url, sql, db_clock):
    sql("INSERT INTO lamplighter.tenants (id, name) VALUES ('acme', 'Acme')")
    sql("INSERT INTO lamplighter.users (email, display_name, role, tenant_id) VALUES "
        "('ada@acme.example', 'Ada', 'superadmin', 'acme')")
    license = license_rows.insert("acme", plan="team", seats=5, expires_at=EXPIRES)
    check = actors.licenses.check.fn
    # The daily job, run twice a day from 40 days before to two days after the expiry.
    for half_days in range(80, -5, -1):
        db_clock.set(EXPIRES - timedelta(hours=12 * half_days))
        check()
    notices = sql("SELECT kind, dedupe_key, recipient_kind, recipient, subject FROM lamplighter.notifications "
                  "ORDER BY id")
    assert [(kind, key.rsplit(":", 1)[1]) for kind, key, *_ in notices] == [
        ("expiry.license", "30d"), ("expiry.license", "7d"), ("expiry.license", "1d"), ("license.expired", "0d")]
    assert {(kind, who) for _, _, kind, who, _ in notices} == {("tenant_owner", "acme")}
    assert notices[1][4] == "The team license of Acme expires within 7 days"
    [after] = license_rows.list_licenses(scope=TenantScope.of("acme"))
    assert (after.id, after.status, after.seats_used) == (license.id, "expired", 1)
    assert license_rows.list_licenses(scope=TenantScope.of("globex")) == []


def test_seat_over_use_opens_one_alert_and_resolves_when_back_within(database_url, sql, db_clock):
    sql("INSERT INTO lamplighter.tenants (id, name) VALUES ('acme', 'Acme')")
    sql("INSERT INTO lamplighter.users (email, display_name, role, tenant_id) VALUES "
        "('a@acme.example', 'A', 'superadmin', 'acme'), ('b@acme.example', 'B', 'operator', 'acme'), "
        "('c@acme.example', 'C', 'viewer', 'acme')")
    db_clock.set(EXPIRES - timedelta(days=100))
    license_rows.insert("acme", plan="starter", seats=2, expires_at=EXPIRES)
    check = actors.licenses.check.fn
    assert check() == {"expired": 0, "active": 1, "notified": 0, "over_seats": 1}
    assert check()["over_seats"] == 1
    [(rule, subject, count, details, resolved)] = sql("SELECT rule, subject, count, details, resolved_at "
                                                      "FROM lamplighter.alerts")
    assert (rule, subject, count, resolved) == ("license.seats", "acme", 2, None)
    assert (details["seats"], details["seats_used"]) == (2, 3)
    sql("UPDATE lamplighter.users SET disabled_at = now() WHERE email = 'c@acme.example'")
    assert check()["over_seats"] == 0
    assert sql("SELECT count(*) FROM lamplighter.alerts WHERE resolved_at IS NOT NULL") == [(1,)]
    assert [k for (k,) in sql("SELECT kind FROM lamplighter.notifications ORDER BY id")] == ["alert.opened",
                                                                                             "alert.resolved"]
