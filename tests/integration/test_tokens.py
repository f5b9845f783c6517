"""API tokens on the real PostgreSQL: shown once and stored only as a hash, refused once revoked
or expired, bound to a tenant and limited to actors or queues; `lamplighter tokens ...`; the
credentials view; tokens.prune_expired."""
import hashlib
import json
import re
from datetime import timedelta

import pytest

from domain import scopes, tenants, tokens
from domain.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from storage.tenants import TenantScope
from tests.cli_runs import run_cli

EVERY = TenantScope.every()
SHAPE = re.compile(r"^llt_[A-Za-z0-9_-]{43}$")


def _table_text(sql, table):
    return json.dumps(sql(f"SELECT to_jsonb(t) FROM {table} t"), default=str)


def test_a_token_is_shown_once_then_stored_only_as_its_hash(database_url, sql):
    issued = tokens.create_token(name="ci deploy", scope_names=scopes.ROLES["operator"], by="cli:ops@host")
    assert SHAPE.match(issued.secret)
    assert issued.secret not in repr(issued)
    [(stored_hash, prefix)] = sql("SELECT secret_hash, display_prefix FROM lamplighter.api_tokens")
    assert stored_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert issued.secret.startswith(prefix) and len(prefix) == 8
    secret_part = issued.secret[len("llt_"):]
    for table in ("lamplighter.api_tokens", "lamplighter.audit_log"):
        assert secret_part not in _table_text(sql, table)
    # Nothing hands it out again: listings carry the prefix only.
    assert issued.secret not in repr(tokens.list_tokens(scope=EVERY))
    who = tokens.authenticate(issued.secret)
    assert who.actor == f"token:{issued.token.id}" and who.scopes == {"read", "operate"} and who.tenant_id is None
    assert sql("SELECT last_used_at IS NOT NULL FROM lamplighter.api_tokens") == [(True,)]
    assert sql("SELECT actor, action, details->'scopes' FROM lamplighter.audit_log") == [
        ("cli:ops@host", "token.created", ["operate", "read"])]


def test_a_revoked_token_is_refused(database_url, sql):
    issued = tokens.create_token(name="to revoke", scope_names=["read"], by="t")
    tokens.authenticate(issued.secret)
    revoked = tokens.revoke_token(issued.token.id, scope=EVERY, by="user:1")
    assert revoked.revoked_at is not None and revoked.revoked_by == "user:1"
    with pytest.raises(Unauthenticated) as refused:
        tokens.authenticate(issued.secret)
    assert str(refused.value) == tokens.REFUSED and issued.secret not in str(refused.value)
    assert tokens.revoke_token(issued.token.id, scope=EVERY, by="user:1").revoked_at == revoked.revoked_at
    assert sql("SELECT actor, action FROM lamplighter.audit_log WHERE action = 'token.revoked'") == [
        ("user:1", "token.revoked")]
    with pytest.raises(NotFound):
        tokens.revoke_token(999_999, scope=EVERY, by="t")


def test_an_expired_token_is_refused(database_url, db_clock):
    issued = tokens.create_token(name="short-lived", scope_names=["read"], expires_in=timedelta(minutes=5), by="t")
    assert tokens.authenticate(issued.secret).scopes == {"read"}
    db_clock.advance(5 * 60 + 1)
    with pytest.raises(Unauthenticated):
        tokens.authenticate(issued.secret)


@pytest.mark.parametrize("presented", ["", "llt_", "llt_" + "A" * 43, "Bearer llt_x", "ghp_" + "A" * 43])
def test_malformed_or_unknown_tokens_are_refused(database_url, presented):
    with pytest.raises(Unauthenticated):
        tokens.authenticate(presented)


def test_a_tenant_bound_token_reaches_only_its_tenant_and_follows_its_billing_status(database_url):
    for tenant in ("acme", "globex"):
        tenants.create_tenant(tenant, tenant.title(), by="t")
    issued = tokens.create_token(name="acme ops", scope_names=scopes.ROLES["superadmin"] - {"tenants"},
                                 tenant_id="acme", by="t")
    who = tokens.authenticate(issued.secret)
    assert who.tenant_id == "acme" and who.tenant_status == "active"
    scopes.authorize(who, "operate", tenant_id="acme")
    with pytest.raises(NotFound):
        scopes.authorize(who, "read", tenant_id="globex")
    assert [t.id for t in tokens.list_tokens(scope=scopes.tenant_scope(who))] == [issued.token.id]
    other = tokens.create_token(name="globex ci", scope_names=["read"], tenant_id="globex", by="t")
    with pytest.raises(NotFound):
        tokens.revoke_token(other.token.id, scope=scopes.tenant_scope(who), by=who.actor)
    tenants.set_status("acme", "read_only", by="t")
    who = tokens.authenticate(issued.secret)
    scopes.authorize(who, "read", tenant_id="acme")
    with pytest.raises(Forbidden):
        scopes.authorize(who, "operate", tenant_id="acme")
    with pytest.raises(InvalidInput):
        tokens.create_token(name="no", scope_names=["tenants"], tenant_id="acme", by="t")


def test_an_enqueue_token_limited_to_actors_and_queues(database_url):
    issued = tokens.create_token(name="reports", scope_names=["enqueue"], actors=["reports.daily"],
                                 queues=["reports"], by="t")
    who = tokens.authenticate(issued.secret)
    scopes.authorize(who, "enqueue", actor="reports.daily", queue="reports")
    with pytest.raises(Forbidden):
        scopes.authorize(who, "enqueue", actor="maintenance.ping", queue="reports")
    with pytest.raises(InvalidInput):
        tokens.create_token(name="limits without enqueue", scope_names=["read"], actors=["a.b"], by="t")


def test_the_credentials_view_lists_what_expires_with_its_owner(database_url, sql):
    expiring = tokens.create_token(name="expiring", scope_names=["read"], expires_in=timedelta(days=30),
                                   owner="user:7", by="t")
    tokens.create_token(name="forever", scope_names=["read"], by="t")
    revoked = tokens.create_token(name="revoked", scope_names=["read"], expires_in=timedelta(days=1), by="t")
    tokens.revoke_token(revoked.token.id, scope=EVERY, by="t")
    assert sql("SELECT kind, credential_id, name, owner, tenant_id, expires_at = %s FROM lamplighter.credentials",
               (expiring.token.expires_at,)) == [("api_token", str(expiring.token.id), "expiring", "user:7", None, True)]


def test_tokens_prune_expired_deletes_tokens_ended_longer_ago_than_the_retention(broker, sql, db_clock):
    import actors

    old = tokens.create_token(name="old", scope_names=["read"], expires_in=timedelta(hours=1), by="t")
    revoked = tokens.create_token(name="revoked", scope_names=["read"], by="t")
    tokens.revoke_token(revoked.token.id, scope=EVERY, by="t")
    kept = tokens.create_token(name="kept", scope_names=["read"], expires_in=timedelta(days=60), by="t")
    db_clock.advance(31 * 86400)
    assert actors.tokens.prune_expired.fn(retention_days=30) == {"deleted": 2, "batches": 1}
    assert sql("SELECT id FROM lamplighter.api_tokens") == [(kept.token.id,)]
    assert actors.tokens.prune_expired.fn(retention_days=30) == {"deleted": 0, "batches": 0}
    assert {old.token.id, revoked.token.id}.isdisjoint(t.id for t in tokens.list_tokens(scope=EVERY))


# ---- the CLI -------------------------------------------------------------------------------

def test_tokens_verbs(database_url, sql, monkeypatch, capsys):
    tenants.create_tenant("acme", "Acme", by="t")
    code, out, err = run_cli(monkeypatch, capsys, "tokens", "create", "--name", "ingest", "--scope", "enqueue",
                             "--actor", "reports.daily", "--tenant", "acme", "--expires-in", "90d")
    assert code == 0
    secret = out.strip()
    assert SHAPE.match(secret) and "shown once" in err and secret not in err
    who = tokens.authenticate(secret)
    assert who.tenant_id == "acme" and who.actors == {"reports.daily"}
    code, out, _ = run_cli(monkeypatch, capsys, "tokens", "list")
    assert code == 0 and secret not in out and secret[:8] + "..." in out
    assert out.splitlines()[1].split()[:7] == ["1", "ingest", secret[:8] + "...", "enqueue", "actors:", "reports.daily",
                                               "acme"]
    code, out, _ = run_cli(monkeypatch, capsys, "tokens", "revoke", "1")
    assert code == 0 and "revoked" in out
    code, out, _ = run_cli(monkeypatch, capsys, "tokens", "list", "--json")
    [listed] = json.loads(out)
    assert listed["state"] == "revoked" and secret not in out
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret)
    assert [a for (a,) in sql("SELECT action FROM lamplighter.audit_log ORDER BY id")] == [
        "tenant.created", "token.created", "token.revoked"]


@pytest.mark.parametrize("argv, code, message", [
    (["tokens", "create", "--name", "x", "--scope", "tenants", "--tenant", "acme"], 2, "platform principals"),
    (["tokens", "create", "--name", "x", "--role", "viewer", "--actor", "a.b"], 2, "apply to the enqueue scope"),
    (["tokens", "create", "--name", "x", "--role", "viewer", "--tenant", "ghost"], 1, "no tenant 'ghost'"),
    (["tokens", "revoke", "77"], 1, "no token 77"),
    (["tokens", "create", "--name", "x", "--role", "viewer", "--expires-at", "2020-01-01"], 2, "has passed"),
])
def test_tokens_verbs_refuse_bad_input_in_one_line(database_url, monkeypatch, capsys, argv, code, message):
    tenants.create_tenant("acme", "Acme", by="t")
    result, out, err = run_cli(monkeypatch, capsys, *argv)
    assert result == code and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
