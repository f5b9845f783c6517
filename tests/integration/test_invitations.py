"""invitations.prune_expired: pending invitations past expiry become expired, and expired ones go
30 days after they expired, in batches, by the database's clock (lamplighter.now())."""
from datetime import timedelta

import actors
from domain import invitations
from storage import invitations as invitation_rows
from storage import jobs
from storage.queries import queries
from tests.conftest import wait_for

prune_expired = actors.invitations.prune_expired.fn


def add(sql, email: str, *, status: str, expires_in: str, expired_in: str | None = None) -> int:
    """An invitation whose expires_at (and expired_at) are the database's now plus an interval."""
    return sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, display_code, "
               "invited_by, expires_at, expired_at) VALUES ('family-7', %s, 'member', %s, md5(%s), 'ABC-123', "
               "'admin-3', lamplighter.now() + %s::interval, lamplighter.now() + %s::interval) RETURNING id",
               (email, status, email, expires_in, expired_in))[0][0]


def invitations_by_email(sql) -> dict[str, tuple]:
    return {email: (status, expired_at) for email, status, expired_at in
            sql("SELECT email, status, expired_at FROM lamplighter.invitations")}


def test_pending_past_expiry_expire_and_expired_go_30_days_after_they_expired(database_url, db_clock, sql):
    add(sql, "pending-past@example.org", status="pending", expires_in="-1 hour")
    add(sql, "pending-future@example.org", status="pending", expires_in="1 day")
    # Past expiry for 45 days but expired only 31 / 29 days ago: the age counts from expired_at.
    add(sql, "expired-31d@example.org", status="expired", expires_in="-45 days", expired_in="-31 days")
    add(sql, "expired-29d@example.org", status="expired", expires_in="-45 days", expired_in="-29 days")
    # Marked expired by something else, without expired_at: its expires_at counts.
    add(sql, "marked-31d@example.org", status="expired", expires_in="-31 days")
    add(sql, "marked-29d@example.org", status="expired", expires_in="-29 days")
    add(sql, "accepted@example.org", status="accepted", expires_in="-90 days")
    add(sql, "revoked@example.org", status="revoked", expires_in="-90 days")
    before = db_clock.now()

    assert prune_expired() == {"expired": 1, "deleted": 2}

    left = invitations_by_email(sql)
    assert sorted(left) == ["accepted@example.org", "expired-29d@example.org", "marked-29d@example.org",
                            "pending-future@example.org", "pending-past@example.org", "revoked@example.org"]
    status, expired_at = left["pending-past@example.org"]
    assert status == "expired" and before <= expired_at <= db_clock.now()
    assert left["pending-future@example.org"] == ("pending", None)
    assert left["accepted@example.org"] == ("accepted", None) and left["revoked@example.org"] == ("revoked", None)
    # Safe to run again: nothing left to do.
    assert prune_expired() == {"expired": 0, "deleted": 0}


def test_an_invitation_goes_30_days_after_it_expired_by_the_database_clock(database_url, db_clock, sql):
    # The process clock never reaches these moments: only the database's clock is moved.
    add(sql, "anna@example.org", status="pending", expires_in="1 hour")
    assert prune_expired() == {"expired": 0, "deleted": 0}
    db_clock.advance(2 * 3600)
    assert prune_expired() == {"expired": 1, "deleted": 0}
    [(expired_at,)] = sql("SELECT expired_at FROM lamplighter.invitations")
    db_clock.set(expired_at + timedelta(days=29))
    assert prune_expired() == {"expired": 0, "deleted": 0}
    db_clock.set(expired_at + timedelta(days=30, seconds=-1))
    assert prune_expired() == {"expired": 0, "deleted": 0}
    db_clock.set(expired_at + timedelta(days=31))
    assert prune_expired() == {"expired": 0, "deleted": 1}
    assert sql("SELECT count(*) FROM lamplighter.invitations") == [(0,)]


def test_both_steps_run_in_batches_and_count_them_all(database_url, sql):
    sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, invited_by, "
        "expires_at) SELECT 'f', 'p' || g || '@example.org', 'member', 'pending', md5('p' || g), 'a', "
        "lamplighter.now() - interval '1 day' FROM generate_series(1, 23) g")
    sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, invited_by, "
        "expires_at, expired_at) SELECT 'f', 'e' || g || '@example.org', 'member', 'expired', md5('e' || g), 'a', "
        "lamplighter.now() - interval '60 days', lamplighter.now() - interval '45 days' FROM generate_series(1, 12) g")
    expire_batches, delete_batches = [], []

    def expire():  # the real batches, counted
        expire_batches.append(invitation_rows.expire_batch(batch_size=5))
        return expire_batches[-1]

    def delete(retention):
        delete_batches.append(invitation_rows.delete_expired_batch(retention_seconds=retention.total_seconds(),
                                                                   batch_size=5))
        return delete_batches[-1]

    assert invitations.expire_and_prune(expire, delete) == {"expired": 23, "deleted": 12}
    assert expire_batches == [5, 5, 5, 5, 3, 0] and delete_batches == [5, 5, 2, 0]
    # The 23 just marked stay (expired today); the 12 long expired are gone.
    assert sql("SELECT status, count(*) FROM lamplighter.invitations GROUP BY status") == [("expired", 23)]


def test_prune_actor_reports_its_counts_in_history(broker, run_worker, sql):
    add(sql, "past@example.org", status="pending", expires_in="-1 minute")
    add(sql, "old@example.org", status="expired", expires_in="-60 days", expired_in="-40 days")
    add(sql, "recent@example.org", status="expired", expires_in="-60 days", expired_in="-10 days")
    run_worker()
    message = actors.invitations.prune_expired.send()
    wait_for(lambda: jobs.get(message.message_id).state == "completed", message="prune completed")
    assert jobs.get(message.message_id).attempts[0].result_summary == {"expired": 1, "deleted": 1}
    assert sorted(invitations_by_email(sql)) == ["past@example.org", "recent@example.org"]


def test_both_steps_use_their_index(database_url, sql):
    # 100,000 invitations, most accepted: 20% pending and not due yet (expiring within two weeks),
    # 0.5% pending past expiry, 1% expired (over the last 60 days).
    sql("INSERT INTO lamplighter.invitations (organization_id, email, role, status, token_hash, invited_by, "
        "expires_at, expired_at) SELECT 'f', 'x' || g, 'member', "
        "CASE WHEN mod(g, 200) = 0 THEN 'pending' WHEN mod(g, 100) = 1 THEN 'expired' "
        "WHEN mod(g, 5) = 2 THEN 'pending' ELSE 'accepted' END, md5(g::text), 'a', "
        "CASE WHEN mod(g, 200) = 0 THEN lamplighter.now() - make_interval(hours => mod(g, 48)) "
        "WHEN mod(g, 5) = 2 THEN lamplighter.now() + make_interval(hours => 1 + mod(g, 336)) "
        "ELSE lamplighter.now() - make_interval(days => mod(g, 90)) END, "
        "CASE WHEN mod(g, 100) = 1 THEN lamplighter.now() - make_interval(days => mod(g, 60)) END "
        "FROM generate_series(1, 100000) g")
    sql("ANALYZE lamplighter.invitations")
    for name, params, index in [
            ("invitation_expire_batch", {"batch_size": 5000}, "invitations_pending_expiry_idx"),
            ("invitation_delete_expired_batch", {"retention_seconds": 30 * 86400, "batch_size": 5000},
             "invitations_expired_since_idx")]:
        plan = "\n".join(r[0] for r in sql("EXPLAIN " + queries("invitations")[name], params))
        assert index in plan, plan
