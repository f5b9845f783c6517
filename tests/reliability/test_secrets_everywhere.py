"""Secrets planted in one run never show in plain text anywhere a person or a scraper can look.

Planted through the paths a user takes (the CLI with secrets on stdin, the domain functions the
API and dashboard call, a dashboard sign-in): a user's passwords, an API token, a webhook
endpoint's signing secrets and secret URL path, an OAuth provider's client secret and an
integration's access and refresh tokens (the local fake provider, tests/oauth_provider.py), a
managed account's password and the Zitadel PAT (the fake Zitadel of test_accounts.py), the
encryption key itself and the dashboard session. Real jobs touch them on a real worker, some
failing with errors that echo them back (a webhook receiver, a token endpoint, an identity
provider). Then every log line at DEBUG, every exception seen, every row of every table, the
/metrics exposition, every GET route of the API (walked from its OpenAPI schema) and every
dashboard page are searched: no planted secret appears in plain text (`enc:v1:` values and hashes
are what is kept)."""
from __future__ import annotations

import base64
import io
import json
import sys
import uuid

import pytest
from werkzeug import Response

import actors
from domain import tokens, users, webhooks
from domain.errors import Unauthenticated
from storage import encryption, jobs, logs
from storage import integrations as integration_rows
from tests.cli_runs import run_cli
from tests.conftest import LOOPBACK, use_database, wait_for
from tests.dashboard_users import signed_in
from tests.integration.test_accounts import FakeZitadel
from tests.oauth_provider import CLIENT_ID, FakeProvider, answer
from tests.smtp_server import smtp_server  # noqa: F401  (fixture)
from tests.web_api import ApiServer

TAG = uuid.uuid4().hex[:10]
PASSWORD = f"planted-PASSWORD-{TAG}"
NEW_PASSWORD = f"planted-NEWPASS-{TAG}"
ACCOUNT_PASSWORD = f"planted-ACCOUNTPW-{TAG}"
PAT = f"planted-ZITADELPAT-{TAG}"
CLIENT_SECRET = f"planted-CLIENTSECRET-{TAG}"
ACCESS = f"planted-ACCESS-{TAG}"
REFRESH = f"planted-REFRESH-{TAG}"
HOOK_PATH = f"planted-HOOKPATH-{TAG}"
S3_SECRET = f"planted-S3SECRET-{TAG}"  # only in the settings: `config` prints them
SMTP_PASSWORD = f"planted-SMTPPW-{TAG}"  # not the one the mail server takes: e-mail fails to sign in
# A Fernet key is 32 bytes in urlsafe base64: these bytes make it recognisable in a dump.
ENCRYPTION_KEY = base64.urlsafe_b64encode(f"planted-ENCKEY-{TAG}-0123456"[:32].encode()).decode()


def every_row(sql) -> str:
    """Every row of every table of the application's schemas, as text."""
    tables = sql("SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
                 "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')")
    assert len(tables) >= 30, tables  # the whole schema, not a handful
    return "\n".join(f"{name}: {row}" for (name,) in tables for (row,) in sql(f"SELECT t::text FROM {name} t"))


def forms_of(secret: str) -> list[str]:
    """The secret and the forms it could be stored in without being protected."""
    found = [secret, secret.encode().hex(), base64.b64encode(secret.encode()).decode().rstrip("=")]
    for prefix in ("llt_", "lls_", "whsec_"):
        if secret.startswith(prefix):
            found.append(secret[len(prefix):])
    return found


class Receiver:
    """The webhook endpoint: its first answer is a 500 echoing everything it was sent, the secret
    included (a receiver's debug page), then 200."""

    def __init__(self, httpserver):
        self.secret = ""
        self.calls = 0
        httpserver.expect_request(f"/hooks/{HOOK_PATH}").respond_with_handler(self.handle)

    def handle(self, request):
        self.calls += 1
        if self.calls == 1:
            return Response(f"debug: secret={self.secret} url={request.url} headers={dict(request.headers)}",
                            status=500)
        return Response("ok", status=200)


def finished(message_id: str, *, first_attempt: bool = False):
    """The job once it is completed or dead (or, with ``first_attempt``, once one attempt ended)."""
    def check():
        job = jobs.get(message_id)
        ended = job.state in ("completed", "dead") or (first_attempt and any(a.finished_at for a in job.attempts))
        return job if ended else None
    return wait_for(check, timeout=20, message=f"job {message_id} ran")


def test_planted_secrets_appear_nowhere_in_plain_text(database_url, broker, run_worker, sql, httpserver,
                                                      smtp_server, monkeypatch, capsys):  # noqa: F811
    env = {"LAMPLIGHTER_ENCRYPTION_KEYS": f"t1:{ENCRYPTION_KEY}", "LAMPLIGHTER_OUTBOUND_ALLOW": LOOPBACK,
           "LAMPLIGHTER_LOG_LEVEL": "DEBUG", "LAMPLIGHTER_LOG_FORMAT": "json",
           "ZITADEL_URL": httpserver.url_for("/").rstrip("/"), "ZITADEL_PAT": PAT, "ZITADEL_ORG_ID": "org-1",
           "ZITADEL_PROJECT_ID": "proj-1", "ZITADEL_TIMEOUT": "2", "ZITADEL_USER_ID_PREFIX": "ll-test-",
           "LAMPLIGHTER_SMTP_URL": smtp_server.url(password=SMTP_PASSWORD), "LAMPLIGHTER_SMTP_FROM": "ll@example.org",
           "LAMPLIGHTER_FILES_S3_ACCESS_KEY_ID": "planted-key-id", "LAMPLIGHTER_FILES_S3_SECRET_ACCESS_KEY": S3_SECRET}
    for name, value in {**env, "DATABASE_URL": database_url}.items():  # the CLI reads the environment
        monkeypatch.setenv(name, value)
    settings = use_database(database_url, **env)
    encryption.reset()
    broker.settings = settings
    provider, zitadel, receiver = FakeProvider(httpserver), FakeZitadel(httpserver), Receiver(httpserver)
    provider.valid_access, provider.valid_refresh = {ACCESS}, {REFRESH}
    secrets = {PASSWORD, NEW_PASSWORD, ACCOUNT_PASSWORD, PAT, SMTP_PASSWORD, S3_SECRET, CLIENT_SECRET, ACCESS, REFRESH,
               HOOK_PATH, ENCRYPTION_KEY, ENCRYPTION_KEY.rstrip("=")}
    outputs, errors = [], []

    def cli(*argv, stdin=""):
        code, out, err = run_cli(monkeypatch, capsys, *argv, stdin=stdin)
        outputs.append(err)
        assert code == 0, err
        return out

    # The CLI, secrets on stdin as the README tells an operator to give them.
    cli("tenants", "create", "acme", "--name", "Acme")
    cli("users", "create", "--email", "ops@example.com", "--name", "Ops", "--role", "superadmin", "--tenant", "acme",
        stdin=PASSWORD + "\n")
    cli("users", "reset-password", "ops@example.com", stdin=NEW_PASSWORD + "\n")
    token = cli("tokens", "create", "--name", "scanner", "--role", "superadmin").strip()
    assert token.startswith("llt_")
    cli("integrations", "add-provider", "fake", "--token-url", provider.url("/oauth/token"), "--userinfo-url",
        provider.url("/userinfo"), "--files-url", provider.url("/files"), "--client-id", CLIENT_ID,
        stdin=CLIENT_SECRET + "\n")
    cli("integrations", "connect", "--tenant", "acme", "--provider", "fake", "--owner", "ops@example.com",
        stdin=json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600}))
    [(integration_id,)] = sql("SELECT id FROM lamplighter.integrations")
    hook_secret = cli("webhooks", "add", "acme", httpserver.url_for(f"/hooks/{HOOK_PATH}"),
                      "--event", "document.classified").strip()
    [endpoint] = webhooks.list_endpoints("acme")
    rotated = cli("webhooks", "rotate-secret", "acme", str(endpoint.id)).strip()
    receiver.secret = rotated
    for who in ("echo", "fine"):
        cli("accounts", "create", "--organization", "family-7", "--username", who, "--given-name", "A",
            "--family-name", "B", "--email", f"{who}@example.org", "--role", "member", "--created-by", "admin-3",
            stdin=ACCOUNT_PASSWORD + "\n")
    for argv in (("config",), ("config", "--json"), ("tokens", "list"), ("webhooks", "list", "--json"),
                 ("integrations", "list", "--json"), ("integrations", "show", str(integration_id), "--json"),
                 ("integrations", "providers", "--json"), ("accounts", "list", "--json"), ("audit", "--json")):
        outputs.append(cli(*argv))
    assert any("files_s3_secret_access_key            (set)" in out for out in outputs)  # config read them
    secrets |= {token, hook_secret, rotated}

    # The rest logs to a stream read at the end, at DEBUG.
    stream = io.StringIO()
    logs.configure(log_format="json", level="DEBUG", stream=stream)
    server = None
    try:
        # Refused sign-ins: the old password, a password typed into the address field, a near miss.
        for email, password in (("ops@example.com", PASSWORD), (NEW_PASSWORD, NEW_PASSWORD),
                                ("ops@example.com", NEW_PASSWORD + "x")):
            with pytest.raises(Unauthenticated) as refused:
                users.sign_in(email, password, source="192.0.2.1")
            errors.append(repr(refused.value))
        with pytest.raises(Unauthenticated) as refused:
            tokens.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
        errors.append(repr(refused.value))

        # Jobs on a real worker; the receiver, the token endpoint and Zitadel echo secrets in errors.
        run_worker(threads=4)
        [delivery] = webhooks.publish("acme", "document.classified", {"document_id": 7},
                                      send=actors.webhooks.queue_deliveries)
        zitadel.script = [lambda body: FakeZitadel.error(503, 14, f"upstream choked on {json.dumps(body)}")]
        sweep = actors.accounts.retry_managed_account_creations.send()
        refreshed = actors.integrations.refresh_tokens.send(integration_id, force=True)
        assert finished(refreshed.message_id).state == "completed"
        secrets |= provider.valid_access | provider.valid_refresh  # the rotated tokens
        echoed = f"bad token {sorted(provider.valid_access)}"
        provider.userinfo_script.append(answer(401, {"error": "invalid_token", "error_description": echoed}))
        health = actors.integrations.check_health.send(integration_id)
        assert finished(sweep.message_id).state == "completed", jobs.get(sweep.message_id).last_error
        assert zitadel.creates and all(body["password"]["password"] == ACCOUNT_PASSWORD for body in zitadel.creates)
        [hook_job] = sql("SELECT message_id FROM dramatiq.queue WHERE actor_name = 'webhooks.deliver'")
        finished(str(hook_job[0]), first_attempt=True)
        sql("UPDATE dramatiq.queue SET available_at = now() WHERE actor_name = 'webhooks.deliver' "
            "AND state = 'queued'")  # the retry's 5 s pass
        wait_for(lambda: sql("SELECT status FROM lamplighter.webhook_deliveries WHERE id = %s",
                             (delivery,)) == [("delivered",)], message="the webhook delivered on its second attempt")
        finished(health.message_id)
        # The 401 queued an urgent refresh: let it run before the next one, which must not race it.
        wait_for(lambda: not sql("SELECT 1 FROM dramatiq.queue WHERE actor_name = 'integrations.refresh_tokens' AND "
                                 "(state = 'running' OR (state = 'queued' AND available_at <= now()))"),
                 message="the urgent refresh ran")
        # A refused refresh whose error_description repeats the refresh token: the integration expires.
        current = sorted(provider.valid_refresh)
        provider.token_script.append(answer(400, {"error": "invalid_grant",
                                                  "error_description": f"refresh token {current} is revoked"}))
        assert finished(actors.integrations.refresh_tokens.send(integration_id, force=True).message_id).state \
            == "completed"
        assert integration_rows.get(integration_id).status == "expired"
        # The owner is told by e-mail, which fails: the mail server refuses the planted password.
        [(notice_job,)] = wait_for(lambda: sql("SELECT message_id FROM dramatiq.queue "
                                               "WHERE actor_name = 'notifications.deliver'"), message="a notice queued")
        assert "535" in finished(str(notice_job)).attempts[0].error_message

        # The API, the dashboard and /metrics, read as a user and a scraper would.
        server = ApiServer().start()
        bodies = scan_web(server, token, sql)
    finally:
        if server is not None:
            server.stop()
        logs.flush()
        logs.configure(log_format="json", level="INFO", stream=sys.__stderr__)
    secrets |= set(bodies.pop("session cookies"))

    # Every line logged in this process, but the fake servers' own (werkzeug: the receiver's side).
    lines = "\n".join(line for line in (stream.getvalue() + "\n".join(outputs) + capsys.readouterr().err).splitlines()
                      if '"logger": "werkzeug"' not in line)
    # The scan reads what the run did: each path's log lines at DEBUG, its rows and its errors.
    for event in ("integration_connected", "integration_refreshed", "integration_refresh_refused",
                  "managed_account_created", "managed_account_retry_scheduled", "user_sign_in_failed",
                  "user_signed_in", "job_started"):
        assert f'"event": "{event}"' in lines, event
    stored = every_row(sql)
    assert "enc:v1:t1:" in stored and "$argon2id$" in stored and receiver.calls == 2
    assert "[REDACTED]" in stored  # the echoed errors were stored, scrubbed
    assert "webhook delivery 1, attempt 1: HTTP 500" in stored and "upstream choked on" in stored
    texts = {"a log line or a CLI error": lines, "an exception": "\n".join(errors), "a stored row": stored, **bodies}
    # The one place the hook's URL is kept as it is: its endpoint's row, to post to it.
    texts_for_path = {**texts, "a stored row": "\n".join(
        row for row in stored.splitlines() if not row.startswith("lamplighter.webhook_endpoints: "))}
    leaks = [f"{secret!r} in {where}: ...{text[max(0, at - 150):at + 80]}..."
             for secret in sorted(secrets) for form in forms_of(secret)
             for where, text in (texts_for_path if secret == HOOK_PATH else texts).items()
             if (at := text.find(form)) >= 0]
    assert not leaks, "planted secrets found in plain text:\n" + "\n".join(leaks)


def scan_web(server: ApiServer, token: str, sql) -> dict[str, str]:
    """Response bodies of every GET route of the API (from its OpenAPI schema), /metrics and
    every dashboard page, for each job in the database where a route takes a job id."""
    job_ids = [str(row[0]) for row in sql("SELECT message_id FROM dramatiq.queue")]
    assert len(job_ids) >= 6
    schema = server.call("GET", "/api/openapi.json", token).json()
    api_paths = [path for path, ops in schema["paths"].items() if "get" in ops]
    assert len(api_paths) >= 6, api_paths
    api = []
    for path in api_paths:
        for url in expand(path, job_ids):
            answer = server.call("GET", url, token)
            assert answer.status_code < 500, (url, answer.status_code)
            api.append(f"{url} {answer.status_code} {answer.headers} {answer.text}")
    for url in ("/api/jobs?state=dead", "/api/jobs?state=completed", "/api/jobs?state=queued", "/api/audit?limit=500"):
        api.append(server.call("GET", url, token).text)
    metrics = server.call("GET", "/metrics", token)
    assert metrics.status_code == 200 and "lamplighter_" in metrics.text
    session = signed_in(server.url, "ops@example.com", NEW_PASSWORD)
    cookies = [cookie.value for cookie in session.cookies]
    assert cookies
    pages = []
    routes = set(get_routes(server.app.routes))
    assert set(api_paths) <= routes
    dashboard = sorted(path for path in routes if path.startswith("/dashboard") and "{name}" not in path
                       and "{report_id}" not in path)  # static files; no report in this run
    others = sorted(routes - set(api_paths) - set(dashboard) - {"/dashboard/static/{name}",
                                                                "/dashboard/reports/{report_id}.{fmt}"})
    assert len(dashboard) >= 8, dashboard
    for path in dashboard:
        for url in expand(path, job_ids):
            answer = session.get(server.url + url, timeout=30)
            assert answer.status_code < 500, (url, answer.status_code)
            pages.append(f"{url} {answer.status_code} {answer.headers} {answer.text}")
    assert any(job_ids[0] in page for page in pages)  # the job pages were read
    for url in others:  # /metrics, health, federation documents, the API's own docs
        answer = server.call("GET", url, token)
        assert answer.status_code != 500, url  # the federation documents are 503 without federation set up
        api.append(f"{url} {answer.status_code} {answer.headers} {answer.text}")
    assert {"/metrics", "/healthz", "/api/jobs/{job_id}"} <= set(api_paths) and "/api/openapi.json" in others
    return {"an API response": "\n".join(api), "/metrics": metrics.text, "a dashboard page": "\n".join(pages),
            "session cookies": cookies}


def get_routes(routes, prefix: str = ""):
    """Paths of every GET route, through included routers (which FastAPI may keep nested)."""
    for route in routes:
        if hasattr(route, "path"):
            if "GET" in (getattr(route, "methods", None) or ()):
                yield prefix + route.path
        elif hasattr(route, "include_context"):
            context = route.include_context
            yield from get_routes(context.included_router.routes, prefix + context.prefix)


def expand(path: str, job_ids: list[str]) -> list[str]:
    if "{job_id}" in path:
        return [path.replace("{job_id}", job_id) for job_id in job_ids]
    assert "{" not in path, f"a GET route with a parameter this scan does not fill: {path}"
    return [path]

