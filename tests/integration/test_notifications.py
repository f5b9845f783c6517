"""The notification outbox against a real PostgreSQL, a real SMTP server on 127.0.0.1 (aiosmtpd)
and a local HTTP receiver (pytest-httpserver): writing in the caller's transaction, the dedupe
key under concurrent writers, delivery by e-mail and webhook, retries recorded in the row,
permanent failures, the safety sweep, the CLI, and no secret in any log line or row."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading

import pytest

import actors
from actors.middleware import Retries
from domain import notifications
from domain.notifications import Recipient
from domain.outcomes import PermanentFailure, RetryLater
from storage import connection, jobs, logs
from storage import notifications as notification_rows
from storage.queries import transaction
from tests.conftest import LOOPBACK, lamplighter_env, use_database, wait_for
from tests.smtp_server import PASSWORD, smtp_server  # noqa: F401  (fixture)

deliver = actors.notifications.deliver.fn
FROM = "Lamplighter <lamplighter@example.org>"


@pytest.fixture
def mail(database_url, smtp_server):  # noqa: F811
    """Settings pointing e-mail at the test's SMTP server."""
    use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url(), LAMPLIGHTER_SMTP_FROM=FROM)
    return smtp_server.mailbox


def write(key="k1", recipient=Recipient.address("ada@example.org"), **fields) -> int:
    values = {"subject": "Build 42 failed", "text": "The nightly build failed.", "html": "<p>The <b>nightly</b> "
              "build failed.</p>", "kind": "test.notice"} | fields
    return notifications.notify(recipient, dedupe_key=key, **values)


def delivery_jobs(sql, notification_id):
    return sql("SELECT message_id, state FROM dramatiq.queue WHERE unique_key = %s",
               (f"notification:{notification_id}",))


# ---- writing ---------------------------------------------------------------------------------

def test_notify_writes_the_row_and_queues_its_delivery_in_the_callers_transaction(database_url, sql):
    with transaction():
        notification_id = write()
        # Not visible to others before the commit: neither the row nor its job.
        assert sql("SELECT count(*) FROM lamplighter.notifications") == [(0,)]
        assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]
    row = notification_rows.get(notification_id)
    assert (row.status, row.attempts, row.channel, row.recipient_kind) == ("pending", 0, "email", "address")
    [(job_id, state)] = delivery_jobs(sql, notification_id)
    assert (str(job_id), state) == (row.job_id, "queued")
    job = jobs.get(job_id)
    assert (job.actor_name, job.queue_name, job.kwargs) == ("notifications.deliver", "notifications",
                                                            {"notification_id": notification_id})


def test_a_rolled_back_change_leaves_no_notification_and_no_job(database_url, sql):
    db = connection.init_database()
    with db.atomic() as txn:
        write()
        txn.rollback()
    assert sql("SELECT count(*) FROM lamplighter.notifications") == [(0,)]
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]


def test_the_same_dedupe_key_writes_once(database_url, sql):
    first = write("once")
    assert write("once", subject="something else") is None
    assert sql("SELECT count(*), min(subject) FROM lamplighter.notifications") == [(1, "Build 42 failed")]
    assert len(delivery_jobs(sql, first)) == 1


def test_the_dedupe_key_holds_under_8_concurrent_writers(database_url, sql):
    """8 threads, each on its own connection, write the same key at once: one row, one job."""
    barrier = threading.Barrier(8)
    results, errors = [], []

    def writer(n):
        try:
            barrier.wait(timeout=10)
            with transaction():
                results.append(write("incident-7", text=f"from writer {n}"))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.init_database().close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    created = [r for r in results if r is not None]
    assert len(results) == 8 and len(created) == 1
    assert sql("SELECT count(*) FROM lamplighter.notifications") == [(1,)]
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE actor_name = 'notifications.deliver'") == [(1,)]
    assert len(delivery_jobs(sql, created[0])) == 1


@pytest.mark.parametrize("recipient,channel,message", [
    (Recipient.address("not an address"), "email", "is not an e-mail address"),
    (Recipient("group", "x"), "email", "kind must be one of"),
    (Recipient.role("superadmin"), "webhook", "a webhook's recipient is its http"),
    (Recipient.address("ftp://hooks.example"), "webhook", "a webhook's recipient is its http"),
])
def test_malformed_notifications_are_refused(database_url, recipient, channel, message):
    with pytest.raises(notifications.InvalidNotification, match=message):
        write(recipient=recipient, channel=channel)


# ---- e-mail ----------------------------------------------------------------------------------

def test_an_email_reaches_a_real_smtp_server_with_both_parts(mail, sql):
    notification_id = write()
    assert deliver(notification_id) == {"notification_id": notification_id, "status": "delivered", "attempt": 1}
    [received] = mail.received
    assert received.rcpt_tos == ["ada@example.org"]
    message = received.message
    assert (message["Subject"], message["From"], message["To"]) == ("Build 42 failed", FROM, "ada@example.org")
    assert message["X-Lamplighter-Notification"] == "k1"
    assert message.get_body(("plain",)).get_content().strip() == "The nightly build failed."
    assert message.get_body(("html",)).get_content().strip() == "<p>The <b>nightly</b> build failed.</p>"
    row = notification_rows.get(notification_id)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None
    # Delivered is final: the job again (a duplicate message) sends nothing.
    assert deliver(notification_id) == {"notification_id": notification_id, "status": "delivered"}
    assert len(mail.received) == 1


def test_a_failing_smtp_server_is_retried_then_succeeds(mail):
    """451 twice, then accepted: each attempt is recorded in the row, the job is retried on the
    actor's schedule, and the third attempt delivers."""
    mail.refuse_next = 2
    notification_id = write()
    for attempt in (1, 2):
        with pytest.raises(RetryLater) as refused:
            deliver(notification_id)
        assert "451 4.3.0 Mailbox temporarily unavailable" in str(refused.value)
        row = notification_rows.get(notification_id)
        assert (row.status, row.attempts) == ("pending", attempt)
        assert row.last_error.startswith("SMTP 127.0.0.1:") and "451" in row.last_error
    assert deliver(notification_id)["status"] == "delivered"
    row = notification_rows.get(notification_id)
    assert (row.status, row.attempts, len(mail.received)) == ("delivered", 3, 1)
    # The schedule on the decorator decides when: 30 s, 2 min, 10 min, 1 h, then hourly.
    actor = actors.notifications.deliver
    delays = [Retries.next_delay_ms(actor, actor.message_with_options(kwargs={}, retries=n), RetryLater("x"))
              for n in range(6)]
    assert delays == [30_000, 120_000, 600_000, 3_600_000, 3_600_000, 3_600_000]


def test_the_worker_retries_a_refused_delivery_on_the_schedule(mail, broker, run_worker, sql):
    """Through a real worker: the first attempt gets 451, the job waits 30 s for its retry."""
    mail.refuse_next = 1
    notification_id = write()
    run_worker(queues=["notifications"])
    [(job_id, _)] = delivery_jobs(sql, notification_id)
    wait_for(lambda: jobs.get(job_id).attempts and jobs.get(job_id).state == "queued", message="first attempt")
    job = jobs.get(job_id)
    [attempt] = job.attempts
    assert attempt.outcome == "failed" and "451" in attempt.error_message
    waited = (job.available_at - attempt.finished_at).total_seconds()
    assert 29 <= waited <= 31
    assert notification_rows.get(notification_id).attempts == 1


def test_out_of_attempts_the_notification_fails(mail):
    mail.refuse_next = 100
    notification_id = write()
    for _ in range(6):
        with pytest.raises(RetryLater):
            deliver(notification_id)
    with pytest.raises(PermanentFailure, match="gave up after 7 attempts; last error: SMTP .* 451"):
        deliver(notification_id)
    row = notification_rows.get(notification_id)
    assert (row.status, row.attempts) == ("failed", 7)


def test_a_permanent_smtp_refusal_fails_at_once(mail):
    mail.refuse_next, mail.refusal = 1, "550 5.1.1 No such mailbox"
    notification_id = write()
    with pytest.raises(PermanentFailure, match="550 5.1.1 No such mailbox"):
        deliver(notification_id)
    row = notification_rows.get(notification_id)
    assert (row.status, row.attempts) == ("failed", 1)


def test_smtp_without_starttls_offered_is_refused_unless_the_url_says_so(mail, smtp_server, database_url):  # noqa: F811
    """smtp:// requires STARTTLS: a server that does not offer it gets no password and no mail."""
    use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url().replace("?starttls=0", ""),
                 LAMPLIGHTER_SMTP_FROM=FROM)
    notification_id = write()
    with pytest.raises(PermanentFailure, match=r"STARTTLS is required unless the URL says \?starttls=0"):
        deliver(notification_id)
    assert (notification_rows.get(notification_id).status, mail.received) == ("failed", [])


def test_unconfigured_email_fails_with_what_to_set(database_url):
    notification_id = write()
    with pytest.raises(PermanentFailure, match="set LAMPLIGHTER_SMTP_URL"):
        deliver(notification_id)
    assert notification_rows.get(notification_id).status == "failed"


def add_user(sql, email, role, tenant=None, disabled=False) -> int:
    if tenant:
        sql("INSERT INTO lamplighter.tenants (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant, tenant))
    [(user_id,)] = sql("INSERT INTO lamplighter.users (email, display_name, role, tenant_id, disabled_at) "
                       "VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id",
                       (email, email.split("@")[0], role, tenant, disabled))
    return user_id


def test_users_roles_and_tenant_owners_are_resolved_when_sent(mail, sql):
    """A role is every enabled user with it (platform users, or the notification's tenant's); a
    tenant's owners are its enabled superadmins; a user is found by id, user:<id> or address."""
    add_user(sql, "ada@example.org", "superadmin")
    add_user(sql, "bob@example.org", "superadmin")
    add_user(sql, "carl@example.org", "superadmin", disabled=True)
    add_user(sql, "dora@acme.example", "superadmin", tenant="acme")
    eve = add_user(sql, "eve@example.org", "operator")
    cases = [(Recipient.role("superadmin"), None, ["ada@example.org", "bob@example.org"]),
             (Recipient.role("superadmin"), "acme", ["dora@acme.example"]),
             (Recipient.tenant_owner("acme"), "acme", ["dora@acme.example"]),
             (Recipient.user(eve), None, ["eve@example.org"]),
             (Recipient.user(f"user:{eve}"), None, ["eve@example.org"]),
             (Recipient.user("EVE@example.org"), None, ["eve@example.org"])]
    for n, (recipient, tenant, expected) in enumerate(cases):
        assert deliver(write(f"k-{n}", recipient=recipient, tenant_id=tenant))["status"] == "delivered"
        assert mail.received[-1].rcpt_tos == expected, recipient
    assert mail.received[0].message["To"] == "ada@example.org, bob@example.org"


@pytest.mark.parametrize("recipient", [Recipient.user("admin-3"), Recipient.role("viewer"),
                                       Recipient.tenant_owner("nobody"), Recipient.user("carl@example.org")])
def test_a_recipient_nobody_answers_to_fails_at_once(mail, sql, recipient):
    add_user(sql, "carl@example.org", "superadmin", disabled=True)
    notification_id = write(recipient=recipient)
    with pytest.raises(PermanentFailure, match=f"no e-mail address for {recipient.kind} '{recipient.value}'"):
        deliver(notification_id)
    assert notification_rows.get(notification_id).status == "failed"
    assert mail.received == []


def test_no_secret_in_any_log_line_or_error(mail, smtp_server, database_url, sql):  # noqa: F811
    """A wrong password refused by a server that echoes it back, then the right one: the SMTP
    password is in no log line, no row and no job record."""
    stream = io.StringIO()
    logs.configure(log_format="json", level="DEBUG", stream=stream)
    try:
        mail.refuse_auth, mail.auth_refusal = 2, f"454 4.7.0 Temporary authentication failure for password {PASSWORD}"
        notification_id = write()
        with pytest.raises(RetryLater) as refused:
            deliver(notification_id)
        assert PASSWORD not in str(refused.value) and "[REDACTED]" in str(refused.value)
        assert "password [REDACTED]" in notification_rows.get(notification_id).last_error
        assert deliver(notification_id)["status"] == "delivered"
        use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url(password="wrong-" + PASSWORD),
                     LAMPLIGHTER_SMTP_FROM=FROM)
        other = write("k2")
        with pytest.raises(PermanentFailure, match="535"):
            deliver(other)
    finally:
        logs.configure(log_format="json", level="INFO")
    # Lamplighter's lines and the libraries' (not the test server's own, which logs what it sends).
    captured = "\n".join(line for line in stream.getvalue().splitlines() if '"logger": "mail.log"' not in line)
    assert "notification_attempt_failed" in captured and "notification_delivered" in captured
    assert PASSWORD not in captured, [line for line in captured.splitlines() if PASSWORD in line]
    everywhere = " ".join(sql(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")[0][0]
                          for table in ("lamplighter.notifications", "dramatiq.queue", "lamplighter.job_history"))
    assert PASSWORD not in everywhere


# ---- webhooks --------------------------------------------------------------------------------

def test_a_webhook_gets_the_notification_as_json(database_url, httpserver):
    use_database(database_url, LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    httpserver.expect_oneshot_request("/hooks/ops", method="POST").respond_with_data("ok")
    notification_id = write(recipient=Recipient.address(httpserver.url_for("/hooks/ops")), channel="webhook")
    assert deliver(notification_id)["status"] == "delivered"
    [(request, _)] = httpserver.log
    body = request.get_json()
    assert body | {"created_at": None} == {
        "id": notification_id, "kind": "test.notice", "subject": "Build 42 failed", "text": "The nightly build failed.",
        "html": "<p>The <b>nightly</b> build failed.</p>", "tenant_id": None, "dedupe_key": "k1", "created_at": None}
    assert request.headers["Content-Type"] == "application/json"


def test_a_slack_webhook_gets_a_text_body(database_url, httpserver):
    use_database(database_url, LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    httpserver.expect_oneshot_request("/services/T0/B0/x", method="POST").respond_with_data("ok")
    notification_id = write(recipient=Recipient.address(httpserver.url_for("/services/T0/B0/x")), channel="webhook",
                            webhook_format="slack")
    deliver(notification_id)
    [(request, _)] = httpserver.log
    assert request.get_json() == {"text": "*Build 42 failed*\nThe nightly build failed."}


@pytest.mark.parametrize("status,outcome,final", [(503, RetryLater, False), (404, PermanentFailure, True),
                                                  (302, PermanentFailure, True)])
def test_only_2xx_counts_for_a_webhook(database_url, httpserver, status, outcome, final):
    use_database(database_url, LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    headers = {"Location": httpserver.url_for("/elsewhere")} if status == 302 else {}
    httpserver.expect_request("/hook", method="POST").respond_with_data("no", status=status, headers=headers)
    httpserver.expect_request("/elsewhere").respond_with_data("ok")
    notification_id = write(recipient=Recipient.address(httpserver.url_for("/hook")), channel="webhook")
    with pytest.raises(outcome, match=f"HTTP {status}"):
        deliver(notification_id)
    row = notification_rows.get(notification_id)
    assert (row.status, row.attempts) == ("failed" if final else "pending", 1)
    assert [r.path for r, _ in httpserver.log] == ["/hook"]  # a redirect is not followed
    assert "/hook" not in row.last_error  # the URL's path (a hook's secret) is not recorded


# ---- the safety sweep and operators --------------------------------------------------------------

def test_the_sweep_requeues_pending_rows_whose_job_is_gone_and_leaves_the_others(database_url, sql, db_clock):
    lost, waiting, done = write("lost"), write("waiting"), write("done")
    sql("UPDATE lamplighter.notifications SET status = 'delivered', delivered_at = now() WHERE id = %s", (done,))
    [(lost_job, _)] = delivery_jobs(sql, lost)
    sql("UPDATE dramatiq.queue SET state = 'dead' WHERE message_id = %s", (lost_job,))
    requeue = actors.notifications.requeue_undelivered.fn
    assert requeue() == {"pending": 0, "requeued": 0}  # younger than a minute: not looked at yet
    db_clock.advance(120)
    assert requeue() == {"pending": 2, "requeued": 1}
    jobs_of_lost = dict(delivery_jobs(sql, lost))
    assert len(jobs_of_lost) == 2 and list(jobs_of_lost.values()).count("queued") == 1
    assert len(delivery_jobs(sql, waiting)) == 1
    assert requeue() == {"pending": 2, "requeued": 0}  # its new job now waits


def test_cli_lists_the_outbox_and_retries_a_failed_notification(database_url, sql, httpserver):
    use_database(database_url, LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    address = write("a")
    hook = write("b", recipient=Recipient.address(httpserver.url_for("/secret-path/token")), channel="webhook")
    sql("UPDATE lamplighter.notifications SET status = 'failed', attempts = 7, last_error = 'gave up' WHERE id = %s",
        (address,))
    env = lamplighter_env(DATABASE_URL=database_url)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "console", "notifications", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    listed = cli("--json")
    assert listed.returncode == 0, listed.stderr
    view = {row["id"]: row for row in json.loads(listed.stdout)}
    assert (view[address]["status"], view[address]["recipient"]) == ("failed", "address:ada@example.org")
    assert view[hook]["recipient"] == f"webhook:http://{httpserver.host}:{httpserver.port}/..."
    assert "secret-path" not in listed.stdout
    failed = cli("--status", "failed")
    assert failed.returncode == 0 and failed.stdout.startswith("ID") and len(failed.stdout.splitlines()) == 2

    retried = cli("retry", str(address))
    assert retried.returncode == 0, retried.stderr
    row = notification_rows.get(address)
    assert (row.status, row.attempts) == ("pending", 0)
    assert f"job {row.job_id}" in retried.stdout
    [(actor, target, details)] = sql("SELECT actor, target_id, details FROM lamplighter.audit_log "
                                     "WHERE action = 'notification.retried'")
    assert actor.startswith("cli:") and target == str(address) and details["job_id"] == row.job_id
    again = cli("retry", str(address))
    assert again.returncode == 1 and "is pending, not failed" in again.stderr
    assert cli("retry", "999").returncode == 1
