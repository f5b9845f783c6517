"""No secret reaches a log line or a record: a planted password and token go through every verb
and domain path that handles them, at DEBUG, and then appear in no log line, no audit row and
no stored column (only the password's argon2id hash and the token's SHA-256 are kept)."""
import io
import json

import pytest

from domain import sessions, tokens, users
from domain.errors import Unauthenticated
from storage import logs
from storage.tenants import TenantScope
from tests.cli_runs import run_cli

PASSWORD = "planted-PASSWORD-7f3a9c"
NEW_PASSWORD = "planted-NEWPASS-41d2e8"


def _everything_stored(sql) -> str:
    tables = ["lamplighter.audit_log", "lamplighter.users", "lamplighter.api_tokens", "lamplighter.sessions",
              "lamplighter.tenants"]
    return "\n".join(json.dumps(sql(f"SELECT to_jsonb(t) FROM {table} t"), default=str) for table in tables)


def test_a_planted_password_and_token_appear_in_no_log_line_and_no_audit_row(database_url, sql, monkeypatch,
                                                                              capsys):
    monkeypatch.setenv("LAMPLIGHTER_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LAMPLIGHTER_LOG_FORMAT", "json")
    printed = []

    def run(*argv, stdin=""):
        code, out, err = run_cli(monkeypatch, capsys, *argv, stdin=stdin)
        printed.append((out, err))
        return code, out

    assert run("tenants", "create", "acme", "--name", "Acme")[0] == 0
    assert run("users", "create", "--email", "ops@example.com", "--name", "Ops", "--role", "superadmin",
               "--tenant", "acme", stdin=PASSWORD + "\n")[0] == 0
    assert run("users", "reset-password", "ops@example.com", stdin=NEW_PASSWORD + "\n")[0] == 0
    code, token = run("tokens", "create", "--name", "ci", "--role", "operator", "--tenant", "acme")
    token = token.strip()
    assert code == 0 and token.startswith("llt_")
    assert run("tokens", "list")[0] == 0
    assert run("users", "create", "--email", "short@example.com", "--name", "S", "--role", "viewer",
               stdin="tinyPW9\n")[0] == 2  # refused: the message must not repeat it

    # The domain paths the dashboard and the API will take, logging to a stream we read.
    stream = io.StringIO()
    logs.configure(log_format="json", level="DEBUG", stream=stream)
    try:
        with pytest.raises(Unauthenticated):
            users.sign_in("ops@example.com", PASSWORD, source="192.0.2.1")  # the old one: refused
        with pytest.raises(Unauthenticated):
            users.sign_in(NEW_PASSWORD, NEW_PASSWORD)  # a password typed into the address field
        session = sessions.start(users.sign_in("ops@example.com", NEW_PASSWORD, source="192.0.2.1"))
        assert sessions.resolve(session.session_id).tenant_id == "acme"
        assert tokens.authenticate(token).tenant_id == "acme"
        with pytest.raises(Unauthenticated) as refused:
            tokens.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
        assert token[:-1] not in str(refused.value)
        [issued] = tokens.list_tokens(scope=TenantScope.of("acme"))
        tokens.revoke_token(issued.id, scope=TenantScope.of("acme"), by=f"token:{issued.id}")
        with pytest.raises(Unauthenticated):
            tokens.authenticate(token)
        assert sessions.end(session.session_id)
    finally:
        logs.configure(log_format="json", level="INFO")

    lines = "\n".join(err for _, err in printed) + "\n" + stream.getvalue()
    assert '"event": "token_created"' in lines and '"event": "user_signed_in"' in lines  # the logs were captured
    # What is printed on purpose: the token, once, on stdout of `tokens create`.
    assert [out for out, _ in printed].count(token + "\n") == 1
    assert not any(token in out for out, _ in printed if out != token + "\n")
    stored = _everything_stored(sql)
    assert sql("SELECT count(*) FROM lamplighter.audit_log") >= [(8,)]
    for secret in (PASSWORD, NEW_PASSWORD, "tinyPW9", token, token[len("llt_"):], session.session_id,
                   session.session_id[len("lls_"):]):
        assert secret not in lines, f"{secret!r} in a log line or an error message"
        assert secret not in stored, f"{secret!r} in a stored row"
