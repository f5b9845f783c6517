"""integrations.refresh_tokens against a local OAuth 2.0 provider (tests/oauth_provider.py) and a
real PostgreSQL: success with and without refresh-token rotation, client_secret_basic and
client_secret_post, no expires_in, invalid_grant / invalid_client, 429 with Retry-After, 503; the
one pending refresh per integration, moved by reconnects under a frozen database clock; the CLI."""
from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

import actors
from domain.outcomes import PermanentFailure, RetryLater
from storage import integrations as rows
from storage import logs
from tests.cli_runs import run_cli
from tests.oauth_provider import (CLIENT_ID, CLIENT_SECRET, FIRST_ACCESS, FIRST_REFRESH, acme, answer,  # noqa: F401
                                  configured, connect, provider, save_provider)

refresh_tokens = actors.integrations.refresh_tokens.fn


def pending_refreshes(sql, integration_id: int) -> list[tuple]:
    """(state, available_at, priority, kwargs) of the jobs holding the integration's refresh key."""
    return sql("SELECT state, available_at, priority, message -> 'kwargs' FROM dramatiq.queue "
               "WHERE unique_key = %s ORDER BY enqueued_at", (f"refresh-{integration_id}",))


def test_a_refresh_with_rotation_stores_both_tokens_and_schedules_the_next(acme, provider, sql):
    row = connect(acme)
    result = refresh_tokens(row.id, force=True)

    assert result == {"outcome": "refreshed", "expires_in": 3600.0, "rotated": True}
    [request] = provider.token_requests
    assert request["form"] == {"grant_type": "refresh_token", "refresh_token": FIRST_REFRESH}
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert provider.basic_credentials(request) == (CLIENT_ID, CLIENT_SECRET)  # client_secret_basic by default
    after = rows.get(row.id)
    assert rows.reveal(after.access_token) == "at-1-never-logged"
    assert rows.reveal(after.refresh_token) == "rt-1-never-logged"
    assert after.status == "active" and after.last_refreshed_at is not None
    assert timedelta(seconds=3590) < after.expires_at - after.last_refreshed_at <= timedelta(seconds=3600)
    [(state, available_at, _, _)] = pending_refreshes(sql, row.id)  # one pending refresh, moved
    assert state == "queued" and abs((available_at - (after.expires_at - timedelta(minutes=5))).total_seconds()) < 1
    # At rest, only ciphertext.
    [(access, refresh)] = sql("SELECT access_token, refresh_token FROM lamplighter.integrations")
    assert access.startswith("enc:v1:") and refresh.startswith("enc:v1:")
    [(secret,)] = sql("SELECT client_secret FROM lamplighter.cloud_providers")
    assert secret.startswith("enc:v1:") and CLIENT_SECRET not in secret


def test_without_rotation_the_refresh_token_is_kept_and_client_secret_post_puts_the_client_in_the_body(
        acme, provider, sql):
    save_provider(provider, name="posting", method="client_secret_post")
    provider.rotate = False
    row = connect(acme, provider="posting")

    assert refresh_tokens(row.id, force=True)["rotated"] is False

    [request] = provider.token_requests
    assert "Authorization" not in request["headers"]
    assert request["form"] == {"grant_type": "refresh_token", "refresh_token": FIRST_REFRESH,
                               "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    after = rows.get(row.id)
    assert rows.reveal(after.refresh_token) == FIRST_REFRESH and rows.reveal(after.access_token) == "at-1-never-logged"


def test_a_token_response_without_expires_in_gets_the_configured_lifetime_and_says_so(acme, provider, database_url):
    from tests.conftest import use_database

    settings = use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=acme.encryption_keys,
                            LAMPLIGHTER_OUTBOUND_ALLOW="127.0.0.1",
                            LAMPLIGHTER_INTEGRATIONS_DEFAULT_TOKEN_LIFETIME="1800")
    provider.expires_in = None
    row = connect(settings)
    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    try:
        result = refresh_tokens(row.id, force=True)
    finally:
        logs.configure(log_format="json", level="INFO")
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]

    assert result["outcome"] == "refreshed" and result["expires_in"] == 1800.0
    after = rows.get(row.id)
    assert timedelta(seconds=1790) < after.expires_at - after.last_refreshed_at <= timedelta(seconds=1800)
    [event] = [e for e in logged if e["event"] == "integration_token_lifetime_defaulted"]
    assert event["lifetime_s"] == 1800.0 and event["integration_id"] == row.id


@pytest.mark.parametrize("error, status", [("invalid_grant", "expired"), ("invalid_client", "revoked"),
                                           ("unauthorized_client", "revoked")])
def test_a_refused_refresh_is_permanent_and_the_owner_is_told_once(acme, provider, sql, error, status):
    row = connect(acme, owner="owner@acme.example")
    provider.token_script.append(answer(400 if error != "invalid_client" else 401,
                                        {"error": error, "error_description": f"no: {FIRST_REFRESH}"}))

    assert refresh_tokens(row.id, force=True) == {"outcome": status, "error": error}

    after = rows.get(row.id)
    assert (after.status, after.refresh_token) == (status, None)
    assert FIRST_REFRESH not in after.status_message and "[REDACTED]" in after.status_message
    assert refresh_tokens(row.id, force=True) == {"outcome": "skipped", "status": status}  # no retry, no call
    assert len(provider.token_requests) == 1
    notices = sql("SELECT recipient_kind, recipient, kind, subject FROM lamplighter.notifications")
    assert notices == [("user", str(after.owner_user_id), f"integration.{status}",
                        f"Cloud integration 'default' {'has expired' if status == 'expired' else 'was revoked'}")]


def test_429_is_retried_after_retry_after_and_503_then_success_and_the_status_stays_active(acme, provider):
    row = connect(acme)
    provider.token_script += [answer(429, {"error": "slow_down"}, {"Retry-After": "120"}),
                              answer(503, {"error": "temporarily_unavailable"})]

    with pytest.raises(RetryLater) as limited:
        refresh_tokens(row.id, force=True)
    assert 120 <= limited.value.delay <= 132  # Retry-After, spread by up to 10%
    with pytest.raises(RetryLater) as unavailable:
        refresh_tokens(row.id, force=True)
    assert unavailable.value.delay is None  # the actor's backoff decides
    failed = rows.get(row.id)
    assert failed.status == "active" and failed.refresh_failed_at is not None
    assert "HTTP 503" in failed.status_message and "/oauth/token" not in failed.status_message

    assert refresh_tokens(row.id, force=True)["outcome"] == "refreshed"
    after = rows.get(row.id)
    assert (after.status, after.refresh_failed_at, after.status_message) == ("active", None, None)


def test_a_provider_that_cannot_be_reached_is_retried(acme, provider, sql):
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    row = connect(acme)
    sql("UPDATE lamplighter.cloud_providers SET token_url = %s", (f"http://127.0.0.1:{port}/oauth/token",))
    with pytest.raises(RetryLater, match="connection failed"):
        refresh_tokens(row.id, force=True)
    assert rows.get(row.id).status == "active" and rows.get(row.id).refresh_failed_at is not None


def test_a_failing_refresh_marks_expired_only_once_the_token_has_really_expired(acme, provider, db_clock):
    row = connect(acme)
    provider.token_script += [answer(502), answer(502)]
    with pytest.raises(RetryLater):
        refresh_tokens(row.id, force=True)
    assert rows.get(row.id).status == "active"
    db_clock.advance(3601)
    with pytest.raises(RetryLater):
        refresh_tokens(row.id, force=True)
    assert rows.get(row.id).status == "expired"
    assert refresh_tokens(row.id)["outcome"] == "refreshed"  # still tried, and back
    assert rows.get(row.id).status == "active"


def test_a_token_endpoint_that_does_not_speak_oauth_is_an_error(acme, provider):
    row = connect(acme)
    provider.token_script.append(answer(200, {"token": "not-oauth"}))
    with pytest.raises(PermanentFailure, match="no access_token"):
        refresh_tokens(row.id, force=True)
    assert rows.get(row.id).status == "error"


def test_frozen_clock_refresh_at_t_minus_5_and_reconnects_move_the_one_pending_job(acme, provider, db_clock, sql):
    row = connect(acme, expires_in=3600)
    [(state, available_at, priority, _)] = pending_refreshes(sql, row.id)
    assert row.expires_at - row.now == timedelta(minutes=60)
    assert available_at == row.expires_at - timedelta(minutes=5) == row.now + timedelta(minutes=55)

    later = connect(acme, expires_in=7200)  # the same integration, connected again
    assert later.id == row.id and later.generation == 2
    [(_, moved_later, _, _)] = pending_refreshes(sql, row.id)
    assert moved_later == later.now + timedelta(seconds=7200 - 300)

    earlier = connect(acme, expires_in=1800)
    [(_, moved_earlier, _, _)] = pending_refreshes(sql, row.id)
    assert moved_earlier == earlier.now + timedelta(seconds=1800 - 300) < moved_later

    # Time passes on the database's clock; the job is due when it says.
    db_clock.advance(1800 - 300 - 1)
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key = %s AND available_at <= %s",
               (f"refresh-{row.id}", db_clock.now())) == [(0,)]
    db_clock.advance(2)
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key = %s AND available_at <= %s",
               (f"refresh-{row.id}", db_clock.now())) == [(1,)]
    # Due now by the database's clock: the refresh runs and schedules its successor at the new T-5 min.
    assert refresh_tokens(row.id)["outcome"] == "refreshed"
    refreshed = rows.get(row.id)
    [(_, successor_at, _, _)] = pending_refreshes(sql, row.id)
    assert refreshed.expires_at == refreshed.last_refreshed_at + timedelta(minutes=60)
    assert successor_at == refreshed.expires_at - timedelta(minutes=5)
    # A short-lived token is refreshed halfway through its life instead.
    short = connect(acme, expires_in=240, name="short")
    [(_, short_at, _, _)] = pending_refreshes(sql, short.id)
    assert short_at == short.now + timedelta(seconds=120)


def test_a_refresh_job_that_finds_the_row_refreshed_skips_and_keeps_a_refresh_pending(acme, provider, sql):
    row = connect(acme)
    assert refresh_tokens(row.id) == {"outcome": "already_refreshed"}  # 60 min left: not due
    assert provider.token_requests == []
    [(state, available_at, _, _)] = pending_refreshes(sql, row.id)
    assert state == "queued" and abs((available_at - (row.expires_at - timedelta(minutes=5))).total_seconds()) < 1


@pytest.fixture
def cli_env(configured, monkeypatch):
    """The CLI reads its settings from the environment: this test's database and key."""
    for name, value in (("DATABASE_URL", configured.database_url),
                        ("LAMPLIGHTER_ENCRYPTION_KEYS", configured.encryption_keys)):
        monkeypatch.setenv(name, value)


def cli_exit(monkeypatch, capsys, *argv, stdin: str = "") -> tuple[int, str, str]:
    """run_cli, with argparse's own refusals (SystemExit) as exit codes too."""
    try:
        return run_cli(monkeypatch, capsys, *argv, stdin=stdin)
    except SystemExit as exc:
        out, err = capsys.readouterr()
        return exc.code, out, err


def test_cli_connect_reads_tokens_from_stdin_and_never_shows_them(acme, cli_env, provider, sql, monkeypatch,
                                                                  capsys):
    body = json.dumps({"access_token": FIRST_ACCESS, "refresh_token": FIRST_REFRESH, "expires_in": 3600})
    code, out, err = run_cli(monkeypatch, capsys, "integrations", "connect", "--tenant", "acme", "--provider", "fake",
                             stdin=body)
    assert code == 0, err
    [(integration_id,)] = sql("SELECT id FROM lamplighter.integrations")
    assert f"integration {integration_id} (fake/default) of tenant acme connected" in out
    assert sql("SELECT actor_name, state FROM dramatiq.queue ORDER BY actor_name") == [
        ("integrations.index_files", "queued"), ("integrations.refresh_tokens", "queued")]

    outputs = [out + err]
    for argv in (("list",), ("list", "--json"), ("show", str(integration_id)), ("show", str(integration_id), "--json"),
                 ("providers",), ("refresh", str(integration_id))):
        code, out, err = run_cli(monkeypatch, capsys, "integrations", *argv)
        assert code == 0, err
        outputs.append(out + err)
    assert json.loads(outputs[2])[0]["status"] == "active"
    assert "job " in outputs[-1]
    [(_, _, priority, kwargs)] = pending_refreshes(sql, integration_id)
    assert (priority, kwargs) == (0, {"force": True})  # refresh now: urgent
    for text in outputs:
        assert FIRST_ACCESS not in text and FIRST_REFRESH not in text and "enc:v1:" not in text

    refusals = [cli_exit(monkeypatch, capsys, "integrations", *argv, stdin=stdin) for argv, stdin in (
        (("connect", "--tenant", "acme", "--provider", "fake"), "not json " + FIRST_REFRESH),
        (("connect", "--tenant", "acme", "--provider", "fake"), '{"refresh_token": "x"}'),
        (("connect", "--tenant", "Not Valid", "--provider", "fake"), body),
        (("connect", "--tenant", "acme", "--provider", "fake", "--token", FIRST_ACCESS), body),
        (("show", "x"), ""))]
    for code, out, err in refusals:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert FIRST_REFRESH not in err and FIRST_ACCESS not in err
    code, _, err = run_cli(monkeypatch, capsys, "integrations", "connect", "--tenant", "acme", "--provider", "nope",
                           stdin=body)
    assert code == 1 and "no cloud provider 'nope'" in err


def test_cli_add_provider_reads_the_client_secret_from_stdin(cli_env, provider, sql, monkeypatch, capsys):
    argv = ("integrations", "add-provider", "drive", "--token-url", provider.url("/oauth/token"), "--userinfo-url",
            provider.url("/userinfo"), "--files-url", provider.url("/files"), "--client-id", CLIENT_ID,
            "--client-auth", "client_secret_post")
    code, out, err = run_cli(monkeypatch, capsys, *argv, stdin=CLIENT_SECRET + "\n")
    assert code == 0, err
    [(secret, method)] = sql("SELECT client_secret, client_auth_method FROM lamplighter.cloud_providers")
    assert rows.reveal(secret) == CLIENT_SECRET and method == "client_secret_post"
    code, out, err = run_cli(monkeypatch, capsys, "integrations", "providers", "--json")
    assert json.loads(out)[0]["name"] == "drive" and CLIENT_SECRET not in out
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 2 and "no client secret given" in err
    assert sql("SELECT action FROM lamplighter.audit_log") == [("cloud_provider.saved",)]



def test_key_rotation_re_encrypts_client_secrets_and_tokens_and_refreshes_go_on(acme, provider, sql, database_url):
    from cryptography.fernet import Fernet

    from storage import encryption
    from tests.conftest import use_database

    row = connect(acme)
    new_key = Fernet.generate_key().decode()
    use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=f"t2:{new_key},{acme.encryption_keys}",
                 LAMPLIGHTER_OUTBOUND_ALLOW="127.0.0.1")
    encryption.reset()
    counts = actors.maintenance.rotate_encryption_keys.fn()
    assert (counts["lamplighter.cloud_providers.client_secret"], counts["lamplighter.integrations.access_token"],
            counts["lamplighter.integrations.refresh_token"]) == (1, 1, 1)
    use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=f"t2:{new_key}", LAMPLIGHTER_OUTBOUND_ALLOW="127.0.0.1")
    encryption.reset()  # only the new key from now on
    assert refresh_tokens(row.id, force=True)["outcome"] == "refreshed"
    assert provider.basic_credentials(provider.token_requests[0]) == (CLIENT_ID, CLIENT_SECRET)
    assert provider.token_requests[0]["form"]["refresh_token"] == FIRST_REFRESH
    assert all(v.startswith("enc:v1:t2:") for r in sql("SELECT access_token, refresh_token FROM "
                                                      "lamplighter.integrations") for v in r)
