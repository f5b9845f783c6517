"""Users on the real PostgreSQL: created with an argon2id hash, signed in and refused, disabled,
given a new password; `lamplighter users ...`; each change audited."""
import json

import pytest

from domain import sessions, tenants, users
from domain.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from storage.tenants import TenantScope
from tests.cli_runs import run_cli

PASSWORD = "a long enough password 1"
EVERY = TenantScope.every()


def _audit(sql, action):
    return sql("SELECT actor, target_type, target_id, tenant_id, details FROM lamplighter.audit_log "
               "WHERE action = %s ORDER BY id", (action,))


def test_a_user_is_stored_with_an_argon2id_hash_and_signs_in_with_its_password(database_url, sql):
    user = users.create_user(email="Ada@Example.com", display_name="Ada", role="operator", password=PASSWORD,
                             by="cli:ops@host")
    [(stored,)] = sql("SELECT password_hash FROM lamplighter.users WHERE id = %s", (user.id,))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert "password_hash" not in repr(user) and stored not in repr(user)
    signed_in = users.sign_in("ada@example.com", PASSWORD, source="203.0.113.7")  # address case does not matter
    assert signed_in.id == user.id
    assert sql("SELECT last_login_at IS NOT NULL FROM lamplighter.users WHERE id = %s", (user.id,)) == [(True,)]
    assert _audit(sql, "user.created") == [("cli:ops@host", "user", str(user.id), None,
                                            {"email": "Ada@Example.com", "role": "operator", "password_set": True})]
    assert sql("SELECT actor, host(source_address) FROM lamplighter.audit_log WHERE action = 'user.signed_in'") == [
        (f"user:{user.id}", "203.0.113.7")]


def test_a_wrong_password_an_unknown_address_and_a_disabled_user_are_refused_alike(database_url, sql):
    user = users.create_user(email="bob@example.com", display_name="Bob", role="viewer", password=PASSWORD, by="t")
    refusals = []
    for email, password in (("bob@example.com", "wrong password 123"), ("nobody@example.com", PASSWORD)):
        with pytest.raises(Unauthenticated) as refused:
            users.sign_in(email, password)
        refusals.append(str(refused.value))
    users.disable_user("bob@example.com", scope=EVERY, by="t")
    with pytest.raises(Unauthenticated) as refused:
        users.sign_in("bob@example.com", PASSWORD)
    refusals.append(str(refused.value))
    assert refusals == [users.SIGN_IN_REFUSED] * 3
    assert _audit(sql, "user.sign_in_failed") == [
        (f"user:{user.id}", "user", str(user.id), None, {"reason": "wrong_password"}),
        ("anonymous", "login", users.login_key("nobody@example.com"), None, {"reason": "unknown_user"}),
        (f"user:{user.id}", "user", str(user.id), None, {"reason": "disabled"}),
    ]


def test_a_user_without_a_password_cannot_sign_in_until_one_is_set(database_url):
    users.create_user(email="carol@example.com", display_name="Carol", role="viewer", password=None, by="t")
    with pytest.raises(Unauthenticated):
        users.sign_in("carol@example.com", "")
    users.reset_password("carol@example.com", PASSWORD, scope=EVERY, by="t")
    assert users.sign_in("carol@example.com", PASSWORD).email == "carol@example.com"


def test_bad_users_are_refused(database_url):
    users.create_user(email="dup@example.com", display_name="D", role="viewer", password=None, by="t")
    with pytest.raises(Conflict):
        users.create_user(email="DUP@example.com", display_name="D2", role="viewer", password=None, by="t")
    for bad in ({"email": "not-an-address"}, {"role": "root"}, {"password": "short"}, {"display_name": " "}):
        with pytest.raises(InvalidInput):
            users.create_user(**{"email": "e@example.com", "display_name": "E", "role": "viewer", "password": None,
                                 "by": "t", **bad})
    with pytest.raises(NotFound):
        users.create_user(email="f@example.com", display_name="F", role="viewer", password=None, by="t",
                          tenant_id="no-such-tenant")


def test_disabling_or_a_new_password_ends_the_users_sessions(database_url, sql):
    user = users.create_user(email="dan@example.com", display_name="Dan", role="operator", password=PASSWORD,
                             by="t")
    first = sessions.start(users.sign_in("dan@example.com", PASSWORD))
    assert sessions.resolve(first.session_id).actor == f"user:{user.id}"
    users.reset_password(user.id, "another long password", scope=EVERY, by="t")
    with pytest.raises(Unauthenticated):
        sessions.resolve(first.session_id)
    second = sessions.start(users.sign_in("dan@example.com", "another long password"))
    users.disable_user(str(user.id), scope=EVERY, by="t")
    with pytest.raises(Unauthenticated):
        sessions.resolve(second.session_id)
    assert sql("SELECT count(*) FROM lamplighter.sessions") == [(0,)]
    users.disable_user(str(user.id), scope=EVERY, by="t")  # again: nothing changes, nothing recorded
    assert [row[0] for row in sql("SELECT action FROM lamplighter.audit_log WHERE target_id = %s ORDER BY id",
                                  (str(user.id),))] == [
        "user.created", "user.signed_in", "user.password_reset", "user.signed_in", "user.disabled"]


def test_a_tenants_admin_reaches_only_its_tenants_users(database_url):
    for tenant in ("acme", "globex"):
        tenants.create_tenant(tenant, tenant.title(), by="t")
        users.create_user(email=f"admin@{tenant}.example", display_name="Admin", role="superadmin", password=None,
                          tenant_id=tenant, by="t")
    users.create_user(email="root@example.com", display_name="Root", role="superadmin", password=None, by="t")
    acme = TenantScope.of("acme")
    assert [u.email for u in users.list_users(scope=acme)] == ["admin@acme.example"]
    assert len(users.list_users(scope=EVERY)) == 3
    with pytest.raises(NotFound):
        users.find_user("admin@globex.example", scope=acme)
    with pytest.raises(NotFound):
        users.disable_user("root@example.com", scope=acme, by="user:1")
    with pytest.raises(NotFound):
        users.reset_password("admin@globex.example", PASSWORD, scope=acme, by="user:1")
    assert not any(u.disabled for u in users.list_users(scope=EVERY))


# ---- the CLI -------------------------------------------------------------------------------

def test_users_verbs(database_url, sql, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "users", "create", "--email", "eve@example.com", "--name", "Eve",
                           "--role", "operator", stdin=PASSWORD + "\n")
    assert code == 0 and "created, role operator, platform user" in out
    assert users.sign_in("eve@example.com", PASSWORD).email == "eve@example.com"
    code, out, _ = run_cli(monkeypatch, capsys, "users", "list", "--json")
    [listed] = json.loads(out)
    assert code == 0 and listed["email"] == "eve@example.com" and listed["state"] == "active"
    assert "password" not in out and "argon2" not in out
    code, out, _ = run_cli(monkeypatch, capsys, "users", "reset-password", "eve@example.com",
                           stdin="the new long password\n")
    assert code == 0 and users.sign_in("eve@example.com", "the new long password")
    code, out, _ = run_cli(monkeypatch, capsys, "users", "disable", "eve@example.com")
    assert code == 0 and "disabled" in out
    code, out, _ = run_cli(monkeypatch, capsys, "users", "list")
    assert out.splitlines()[0].split() == ["ID", "EMAIL", "NAME", "ROLE", "TENANT", "STATE", "LAST_LOGIN", "CREATED"]
    assert "disabled" in out.splitlines()[1]
    actors = {row[0] for row in sql("SELECT actor FROM lamplighter.audit_log WHERE action IN "
                                    "('user.created', 'user.password_reset', 'user.disabled')")}
    assert len(actors) == 1 and actors.pop().startswith("cli:")


@pytest.mark.parametrize("argv, stdin, code, message", [
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "viewer"], "short\n", 2,
     "needs 12 to 1024 characters"),
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "viewer"], "", 2, "no password given"),
    (["users", "create", "--email", "nope", "--name", "X", "--role", "viewer", "--no-password"], "", 2,
     "not an e-mail address"),
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "viewer", "--no-password",
      "--tenant", "ghost"], "", 1, "no tenant 'ghost'"),
    (["users", "disable", "ghost@example.com"], "", 1, "no user 'ghost@example.com'"),
    (["users", "reset-password", "42"], "", 1, "no user '42'"),
])
def test_users_verbs_refuse_bad_input_in_one_line(database_url, monkeypatch, capsys, argv, stdin, code, message):
    result, out, err = run_cli(monkeypatch, capsys, *argv, stdin=stdin)
    assert result == code
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


def test_a_taken_address_fails_with_exit_1(database_url, monkeypatch, capsys):
    argv = ["users", "create", "--email", "y@example.com", "--name", "Y", "--role", "viewer", "--no-password"]
    assert run_cli(monkeypatch, capsys, *argv)[0] == 0
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 1 and "already exists" in err


def test_a_password_on_the_command_line_is_refused_before_anything_runs(monkeypatch, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli(monkeypatch, capsys, "users", "create", "--email", "z@example.com", "--name", "Z", "--role", "viewer",
                "--password", "on-the-command-line-1")
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "--password is not accepted" in err and len(err.strip().splitlines()) == 1
    assert "on-the-command-line-1" not in err  # argparse's own message would echo it


def test_no_secret_flag_form_is_echoed(monkeypatch, capsys):
    for argv in (["tokens", "create", "--name", "x", "--token=llt_planted-secret-1"],
                 ["users", "reset-password", "a@example.com", "--password=planted-secret-1"]):
        with pytest.raises(SystemExit) as stopped:
            run_cli(monkeypatch, capsys, *argv)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and "planted-secret-1" not in err and "is not accepted" in err
