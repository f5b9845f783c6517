"""invitations.prune_expired: expired invitations strictly more than 30 days past expiry go,
in batches, with the clock injected (rows at exactly 29, 30 and 31 days)."""
from datetime import datetime, timedelta, timezone

import actors
from domain import invitations
from storage import invitations as invitation_rows
from storage import jobs
from storage.queries import queries
from storage.clock import FrozenClock
from tests.conftest import wait_for

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc)


def add(sql, *, status: str, expires_at: datetime, email: str) -> int:
    return sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, display_code, "
               "invited_by, expires_at) VALUES ('family-7', %s, 'member', %s, md5(%s), 'ABC-123', 'admin-3', %s) "
               "RETURNING id", (email, status, email, expires_at))[0][0]


def emails(sql) -> list[str]:
    return [e for (e,) in sql("SELECT email FROM lamplighter.invitations ORDER BY email")]


def test_only_expired_invitations_more_than_30_days_past_expiry_are_deleted(database_url, sql):
    for days in (29, 30, 31):
        add(sql, status="expired", expires_at=NOW - timedelta(days=days), email=f"expired-{days}d@example.org")
    add(sql, status="expired", expires_at=NOW - timedelta(days=30, microseconds=1), email="expired-30d-1us@example.org")
    add(sql, status="pending", expires_at=NOW - timedelta(days=90), email="pending-90d@example.org")
    add(sql, status="accepted", expires_at=NOW - timedelta(days=90), email="accepted-90d@example.org")
    add(sql, status="revoked", expires_at=NOW - timedelta(days=90), email="revoked-90d@example.org")

    assert invitations.prune_expired(FrozenClock(NOW)) == {"deleted": 2}
    assert emails(sql) == ["accepted-90d@example.org", "expired-29d@example.org", "expired-30d@example.org",
                           "pending-90d@example.org", "revoked-90d@example.org"]
    # A day later the 29- and 30-day rows are 30 and 31 days old: only the second goes.
    assert invitations.prune_expired(FrozenClock(NOW + timedelta(days=1))) == {"deleted": 1}
    assert "expired-30d@example.org" not in emails(sql) and "expired-29d@example.org" in emails(sql)
    assert invitations.prune_expired(FrozenClock(NOW + timedelta(days=1))) == {"deleted": 0}


def test_prune_runs_in_batches_and_counts_them_all(database_url, sql, monkeypatch):
    sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, invited_by, "
        "expires_at) SELECT 'f', 'x' || g || '@example.org', 'member', 'expired', md5(g::text), 'a', %s "
        "FROM generate_series(1, 23) g", (NOW - timedelta(days=45),))
    batches = []
    original = invitation_rows.delete_expired_batch

    def counting(cutoff, *, batch_size):  # the real batch, counted
        batches.append(original(cutoff, batch_size=batch_size))
        return batches[-1]

    monkeypatch.setattr(invitation_rows, "delete_expired_batch", counting)
    assert invitations.prune_expired(FrozenClock(NOW), batch_size=5) == {"deleted": 23}
    assert batches == [5, 5, 5, 5, 3]
    assert sql("SELECT count(*) FROM lamplighter.invitations") == [(0,)]


def test_prune_actor_reports_its_count_in_history(broker, run_worker, sql):
    real_now = datetime.now(timezone.utc)
    add(sql, status="expired", expires_at=real_now - timedelta(days=40), email="old@example.org")
    add(sql, status="expired", expires_at=real_now - timedelta(days=10), email="recent@example.org")
    run_worker()
    message = actors.invitations.prune_expired.send()
    wait_for(lambda: jobs.get(message.message_id).state == "completed", message="prune completed")
    assert jobs.get(message.message_id).attempts[0].result_summary == {"deleted": 1}
    assert emails(sql) == ["recent@example.org"]


def test_prune_uses_the_expired_index(database_url, sql):
    sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, invited_by, "
        "expires_at) SELECT 'f', 'x' || g, 'member', CASE WHEN mod(g, 100) = 0 THEN 'expired' ELSE 'accepted' END, "
        "md5(g::text), 'a', %s - make_interval(days => mod(g, 90)) FROM generate_series(1, 100000) g", (NOW,))
    sql("ANALYZE lamplighter.invitations")
    plan = "\n".join(r[0] for r in sql("EXPLAIN " + queries("invitations")["invitation_delete_expired_batch"],
                                       {"cutoff": NOW - timedelta(days=30), "batch_size": 5000}))
    assert "invitations_expired_idx" in plan, plan
