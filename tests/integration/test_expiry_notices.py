"""Expiry notices through the outbox: 30, 7 and 1 days before, once per item per threshold,
however often and late the daily job runs, and again for a renewed expiry."""
from datetime import datetime, timedelta, timezone

from domain import expiry
from domain.notifications import Recipient

EXPIRES = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)


def item(expires_at=EXPIRES, item_id=42):
    return expiry.Expiring(kind="api_token", item_id=item_id, expires_at=expires_at,
                           recipient=Recipient.address("owner@example.org"), label="API token 'deploy-bot'",
                           tenant_id="acme")


def notices(sql):
    return [key.rsplit(":", 1)[1] for (key,) in
            sql("SELECT dedupe_key FROM lamplighter.notifications ORDER BY id")]


def test_each_threshold_notifies_once(database_url, sql):
    # The daily job, run twice a day from 40 days before to after the expiry.
    for half_days in range(80, -4, -1):
        expiry.notify_if_due(item(), now=EXPIRES - timedelta(hours=12 * half_days))
    assert notices(sql) == ["30d", "7d", "1d"]
    [(subject, body, tenant, kind)] = sql("SELECT subject, body_text, tenant_id, kind FROM lamplighter.notifications "
                                          "WHERE dedupe_key LIKE '%:7d'")
    assert subject == "API token 'deploy-bot' expires within 7 days"
    assert "expires at 2027-03-01 12:00 UTC" in body and (tenant, kind) == ("acme", "expiry.api_token")


def test_a_late_run_tells_only_the_nearest_threshold(database_url, sql):
    assert expiry.notify_expiring([item()], now=EXPIRES - timedelta(days=5)) == {"checked": 1, "notified": 1}
    assert expiry.notify_expiring([item()], now=EXPIRES - timedelta(days=4)) == {"checked": 1, "notified": 0}
    assert notices(sql) == ["7d"]


def test_a_renewed_item_is_told_again_about_its_new_expiry(database_url, sql):
    expiry.notify_if_due(item(), now=EXPIRES - timedelta(days=6))
    renewed = EXPIRES + timedelta(days=365)
    assert expiry.notify_if_due(item(renewed), now=renewed - timedelta(days=6)) is not None
    assert expiry.notify_if_due(item(item_id=43), now=EXPIRES - timedelta(days=6)) is not None
    assert len(notices(sql)) == 3
