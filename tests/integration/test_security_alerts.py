"""notifications.security_alerts and notifications.expiring_credentials on the real PostgreSQL:
seeded audit events and credentials, the incidents and notices they give, and re-runs that
change nothing."""
from datetime import timedelta

from domain import audit, security_alerts, tokens, users


def outbox(sql):
    return sql("SELECT kind, recipient_kind, recipient, dedupe_key FROM lamplighter.notifications ORDER BY id")


def incidents(sql):
    return sql("SELECT rule, subject_kind, subject, count, resolved_at IS NULL FROM lamplighter.alerts ORDER BY id")


def test_twenty_failed_logins_for_one_account_in_five_minutes_are_one_incident_and_one_notice(
        database_url, sql, db_clock):
    import actors

    user = users.create_user(email="ada@example.com", display_name="Ada", role="viewer", password=None, by="t")
    for _ in range(20):
        audit.record(f"user:{user.id}", "user.sign_in_failed", target_type="user", target_id=user.id,
                     source="203.0.113.9", details={"reason": "wrong_password"})
        db_clock.advance(10)  # 20 failures over 200 s
    result = actors.notifications.security_alerts_scan.fn(settle_seconds=0)
    assert result["opened"] == 1 and result["events"] >= 20
    assert incidents(sql) == [("security.failed_login_burst", "user", str(user.id), 1, True)]
    notices = outbox(sql)
    assert [(k, r) for k, _, r, _ in notices] == [("alert.opened", "superadmin")]  # the default audience

    before = (incidents(sql), outbox(sql), sql("SELECT position FROM lamplighter.watermarks"))
    assert actors.notifications.security_alerts_scan.fn(settle_seconds=0) == {
        "events": 0, "opened": 0, "touched": 0, "resolved": 0}
    assert (incidents(sql), outbox(sql), sql("SELECT position FROM lamplighter.watermarks")) == before

    db_clock.advance(3601)  # an hour without a failure: the burst is over, and said so once
    assert security_alerts.scan(settle_seconds=0)["resolved"] == 1
    assert [k for k, _, _, _ in outbox(sql)] == ["alert.opened", "alert.resolved"]


def test_a_burst_across_accounts_from_one_address_and_fewer_failures_than_the_threshold(database_url, sql):
    for n in range(12):  # 12 unknown addresses typed, one source
        audit.record("anonymous", "user.sign_in_failed", source="198.51.100.4", details={"reason": "unknown_user"})
    for n in range(9):
        audit.record("user:99", "user.sign_in_failed", target_type="user", target_id=99, source="192.0.2.1")
    assert security_alerts.scan(settle_seconds=0)["opened"] == 1
    assert incidents(sql) == [("security.failed_login_burst", "address", "198.51.100.4", 1, True)]


def test_privilege_escalation_and_an_admin_login_from_a_new_address(database_url, sql, db_clock):
    assert security_alerts.scan(settle_seconds=0)["events"] == 0  # the reader ran before any of this
    admin = users.create_user(email="root@example.com", display_name="Root", role="superadmin", password=None,
                              by="cli:ops@host")
    tokens.create_token(name="sync", scope_names=["users"], by="cli:ops@host")
    tokens.create_token(name="reader", scope_names=["read"], by="cli:ops@host")
    audit.record(f"user:{admin.id}", "user.signed_in", target_type="user", target_id=admin.id, source="192.0.2.10")
    db_clock.advance(86400)
    audit.record(f"user:{admin.id}", "user.signed_in", target_type="user", target_id=admin.id, source="192.0.2.10")
    audit.record(f"user:{admin.id}", "user.signed_in", target_type="user", target_id=admin.id, source="192.0.2.77")
    result = security_alerts.scan(settle_seconds=0)
    found = incidents(sql)
    assert [(rule, kind) for rule, kind, _, _, _ in found] == [
        ("security.privilege_escalation", "user"), ("security.privilege_escalation", "token"),
        ("security.admin_new_address", "user"), ("security.admin_new_address", "user")]
    assert [subject for _, _, subject, _, _ in found][2:] == [f"{admin.id} from 192.0.2.10",
                                                            f"{admin.id} from 192.0.2.77"]
    assert result["opened"] == 4  # the first sign-in ever, and the new address; not the repeat a day later
    assert security_alerts.scan(settle_seconds=0)["opened"] == 0 and incidents(sql) == found


def test_expiring_credentials_are_told_to_owner_and_superadmins_once_per_threshold(database_url, sql, db_clock):
    import actors

    owner = users.create_user(email="dev@example.com", display_name="Dev", role="operator", password=None, by="t")
    tokens.create_token(name="deploy", scope_names=["operate"], owner=str(owner.id), by="cli:ops@host",
                        expires_in=timedelta(days=6))
    tokens.create_token(name="nightly", scope_names=["read"], by="cli:ops@host", expires_in=timedelta(days=20))
    tokens.create_token(name="later", scope_names=["read"], by="cli:ops@host", expires_in=timedelta(days=90))
    result = actors.notifications.expiring_credentials.fn()
    assert result == {"credentials": 2, "notices_checked": 3, "notified": 3}
    notices = outbox(sql)
    assert sorted((r_kind, r, key.split(":")[-2:]) for _, r_kind, r, key in notices) == [
        ("role", "superadmin", ["30d", "admins"]), ("role", "superadmin", ["7d", "admins"]),
        ("user", str(owner.id), ["7d", "owner"])]
    assert actors.notifications.expiring_credentials.fn()["notified"] == 0 and outbox(sql) == notices
    db_clock.advance(5.5 * 86400)  # a day left for "deploy": its 1-day notices, once each
    assert actors.notifications.expiring_credentials.fn()["notified"] == 2
    assert actors.notifications.expiring_credentials.fn()["notified"] == 0


def test_the_first_scan_starts_an_hour_back_not_at_the_beginning_of_the_audit_log(database_url, sql, db_clock):
    """A deployment that gains the reader with a long audit log is told about the last hour only."""
    users.create_user(email="old@example.com", display_name="Old", role="superadmin", password=None,
                      by="cli:ops@host")  # a privilege escalation, a day before the first scan
    db_clock.advance(86400)
    tokens.create_token(name="sync", scope_names=["users"], by="cli:ops@host")  # one within the hour
    assert security_alerts.scan(settle_seconds=0)["opened"] == 1
    assert [(rule, kind) for rule, kind, _, _, _ in incidents(sql)] == [("security.privilege_escalation", "token")]
    assert security_alerts.scan(settle_seconds=0)["events"] == 0  # kept from the first run on
