"""Dashboard sessions on the real PostgreSQL: a hashed id with an expiry, refused once expired,
and sessions.prune_expired."""
import hashlib
from datetime import timedelta

import pytest

from domain import sessions, tenants, users
from domain.errors import Unauthenticated

PASSWORD = "a long enough password 2"


def test_a_session_is_stored_as_a_hash_and_resolves_to_its_user_until_it_expires(database_url, sql, db_clock):
    tenants.create_tenant("acme", "Acme", by="t")
    user = users.create_user(email="v@acme.example", display_name="V", role="viewer", password=PASSWORD,
                             tenant_id="acme", by="t")
    started = sessions.start(users.sign_in("v@acme.example", PASSWORD), lifetime=timedelta(hours=1),
                             source="192.0.2.9")
    assert started.session_id.startswith("lls_") and started.session_id not in repr(started)
    assert sql("SELECT session_hash, host(source_address) FROM lamplighter.sessions") == [
        (hashlib.sha256(started.session_id.encode()).hexdigest(), "192.0.2.9")]
    who = sessions.resolve(started.session_id)
    assert (who.actor, who.scopes, who.tenant_id, who.tenant_status) == (f"user:{user.id}", {"read"}, "acme", "active")
    db_clock.advance(3601)
    with pytest.raises(Unauthenticated):
        sessions.resolve(started.session_id)
    with pytest.raises(Unauthenticated):
        sessions.resolve("lls_" + "A" * 43)


def test_signing_out_ends_the_session(database_url):
    users.create_user(email="w@example.com", display_name="W", role="operator", password=PASSWORD, by="t")
    started = sessions.start(users.sign_in("w@example.com", PASSWORD))
    assert sessions.end(started.session_id) is True
    assert sessions.end(started.session_id) is False
    with pytest.raises(Unauthenticated):
        sessions.resolve(started.session_id)


def test_sessions_prune_expired_deletes_only_expired_sessions(broker, sql, db_clock):
    import actors

    user = users.create_user(email="x@example.com", display_name="X", role="viewer", password=None, by="t")
    sessions.start(user, lifetime=timedelta(minutes=10))
    sessions.start(user, lifetime=timedelta(minutes=10))
    kept = sessions.start(user, lifetime=timedelta(days=2))
    db_clock.advance(11 * 60)
    assert actors.sessions.prune_expired.fn(batch_size=1) == {"deleted": 2, "batches": 2}
    assert sql("SELECT session_hash FROM lamplighter.sessions") == [
        (hashlib.sha256(kept.session_id.encode()).hexdigest(),)]
    assert actors.sessions.prune_expired.fn(batch_size=1) == {"deleted": 0, "batches": 0}  # a re-run: no change
    assert sql("SELECT count(*) FROM lamplighter.sessions") == [(1,)]
