"""Signed webhooks against a receiver on 127.0.0.1 (pytest-httpserver): signatures checked with
the Standard Webhooks spec written out here, retries on the schedule (frozen clock), 410, a
redirect refused, exhaustion disabling the endpoint, and a job of one tenant never touching
another's delivery."""
import base64
import hashlib
import hmac
import json
import random

import pytest

import actors
from domain import webhook_signatures as signatures
from domain import webhooks
from domain.errors import InvalidInput
from domain.outcomes import PermanentFailure, RetryLater
from tests.cli_runs import run_cli
from tests.conftest import wait_for
from tests.documents_setup import documents_env  # noqa: F401 (fixture)

deliver = actors.webhooks.deliver.fn


def spec_verify(secret: str, headers, body: bytes) -> bool:
    """standardwebhooks.com's verification, from the spec (not from domain/webhook_signatures.py)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in headers["webhook-signature"].split(" "))


@pytest.fixture
def hooks(documents_env, httpserver):
    """acme with an endpoint for document events, globex with one for every event."""
    acme, acme_secret = webhooks.add_endpoint("acme", httpserver.url_for("/acme/hook-secret-path"),
                                              event_types=["document.classified"], by="tests")
    globex, globex_secret = webhooks.add_endpoint("globex", httpserver.url_for("/globex"), by="tests")
    return {"acme": (acme, acme_secret), "globex": (globex, globex_secret)}


def publish(tenant, event_type="document.classified", payload=None) -> list[int]:
    return webhooks.publish(tenant, event_type, payload or {"document_id": 7}, send=actors.webhooks.queue_deliveries)


def delivery(sql, delivery_id):
    return sql("SELECT status, attempts, response_code, last_error, next_attempt_at IS NOT NULL "
               "FROM lamplighter.webhook_deliveries WHERE id = %s", (delivery_id,))[0]


def test_signatures_verify_with_the_spec_during_a_rotation_and_the_legacy_header():
    old, new = signatures.new_secret(), signatures.new_secret()
    body = b'{"type":"document.classified"}'
    headers = signatures.headers([new, old], "msg_1", 1_700_000_000, body, legacy=True)
    assert spec_verify(new, headers, body) and spec_verify(old, headers, body)
    assert not spec_verify(signatures.new_secret(), headers, body)
    assert headers["X-Webhook-Signature"] == "sha256=" + hmac.new(new.encode(), body, hashlib.sha256).hexdigest()
    signatures.verify(old, headers, body, now=1_700_000_100)
    for bad in ({**headers, "webhook-timestamp": "1700000001"}, {**headers, "webhook-id": "msg_2"}):
        with pytest.raises(signatures.InvalidSignature):
            signatures.verify(new, bad, body, now=1_700_000_000)
    with pytest.raises(signatures.InvalidSignature, match="too far"):
        signatures.verify(new, headers, body, now=1_700_000_000 + 301)


def test_events_go_to_their_tenants_endpoints_signed_and_limited_per_endpoint(hooks, httpserver, sql):
    acme_endpoint, acme_secret = hooks["acme"]
    assert publish("acme", "document.expired") == []  # acme's endpoint takes document.classified only
    [acme_delivery] = publish("acme")
    [globex_delivery] = publish("globex", "document.expired")
    assert sql("SELECT tenant_id, message->'args', concurrency_key, concurrency_limit FROM dramatiq.queue "
               "WHERE actor_name = 'webhooks.deliver' ORDER BY tenant_id") == [
        ("acme", ["acme", acme_delivery], f"webhook-endpoint:{acme_endpoint.id}", 4),
        ("globex", ["globex", globex_delivery], f"webhook-endpoint:{hooks['globex'][0].id}", 4)]
    httpserver.expect_request("/acme/hook-secret-path", method="POST").respond_with_data("ok")
    # A job of globex given acme's delivery changes nothing.
    assert deliver("globex", acme_delivery) == {"delivered": 0, "skipped": 1}
    assert delivery(sql, acme_delivery) == ("pending", 0, None, None, False)
    assert deliver("acme", acme_delivery) == {"delivered": 1}
    [(request, _)] = httpserver.log
    assert spec_verify(acme_secret, request.headers, request.get_data())
    assert json.loads(request.get_data()) == {"type": "document.classified", "data": {"document_id": 7},
                                              "timestamp": json.loads(request.get_data())["timestamp"]}
    assert request.headers["webhook-id"] == f"msg_{sql('SELECT event_id FROM lamplighter.webhook_deliveries WHERE id = %s', (acme_delivery,))[0][0]}"
    assert delivery(sql, acme_delivery) == ("delivered", 1, 200, None, False)
    assert delivery(sql, globex_delivery) == ("pending", 0, None, None, False)
    # Secrets are kept encrypted.
    stored = sql("SELECT secret FROM lamplighter.webhook_endpoints ORDER BY id")
    assert all(s.startswith("enc:v1:") and acme_secret not in s for (s,) in stored)


def test_a_failure_is_retried_on_the_schedule_with_jitter_and_retry_after(hooks, httpserver, sql, db_clock):
    [delivery_id] = publish("acme")
    httpserver.expect_request("/acme/hook-secret-path").respond_with_data("busy", status=500)
    start = db_clock.now()
    delays = []
    for attempt in range(1, 4):
        with pytest.raises(RetryLater) as raised:
            deliver("acme", delivery_id)
        delays.append(raised.value.delay)
        [(next_at,)] = sql("SELECT next_attempt_at FROM lamplighter.webhook_deliveries")
        db_clock.set(next_at)  # the clock jumps to the next attempt instead of waiting
    assert 4.5 <= delays[0] <= 5.5 and 270 <= delays[1] <= 330 and 1620 <= delays[2] <= 1980
    assert (db_clock.now() - start).total_seconds() == pytest.approx(sum(delays), abs=2)
    assert delivery(sql, delivery_id) == ("pending", 3, 500, "HTTP 500", True)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/acme/hook-secret-path").respond_with_data("later", status=429,
                                                                          headers={"Retry-After": "9000"})
    with pytest.raises(RetryLater) as raised:
        deliver("acme", delivery_id)
    assert 9000 <= raised.value.delay <= 9900  # the receiver asked for longer than the schedule's 2 h
    assert [webhooks.retry_delay(n, None, random.Random(n)) / s for n, s in enumerate(webhooks.RETRY_SCHEDULE, 1)] \
        == pytest.approx([1.0] * 9, abs=0.1)


def test_a_redirect_is_not_followed_and_counts_as_a_failure(hooks, httpserver, sql):
    [delivery_id] = publish("acme")
    httpserver.expect_request("/acme/hook-secret-path").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/elsewhere")})
    with pytest.raises(RetryLater, match="HTTP 302 .a redirect; not followed"):
        deliver("acme", delivery_id)
    assert [r.path for r, _ in httpserver.log] == ["/acme/hook-secret-path"]
    assert delivery(sql, delivery_id)[:3] == ("pending", 1, 302)


def test_410_gone_disables_the_endpoint_cancels_its_queue_and_notifies_once(hooks, httpserver, sql):
    first, second, third = (publish("acme")[0] for _ in range(3))
    [globex_delivery] = publish("globex")
    httpserver.expect_request("/acme/hook-secret-path").respond_with_data("", status=410)
    with pytest.raises(PermanentFailure, match="410 Gone"):
        deliver("acme", first)
    assert [delivery(sql, d)[0] for d in (first, second, third, globex_delivery)] == [
        "failed", "cancelled", "cancelled", "pending"]
    assert deliver("acme", second) == {"delivered": 0, "skipped": 1}  # its queued job finds nothing to send
    assert sql("SELECT id, enabled, disabled_reason FROM lamplighter.webhook_endpoints ORDER BY id") == [
        (hooks["acme"][0].id, False, "410 Gone"), (hooks["globex"][0].id, True, None)]
    [(kind, tenant, text)] = sql("SELECT kind, tenant_id, body_text FROM lamplighter.notifications")
    assert (kind, tenant) == ("webhook.endpoint_disabled", "acme") and "hook-secret-path" not in text
    assert publish("acme") == []  # a disabled endpoint gets no new deliveries


def test_exhausted_retries_disable_the_endpoint(hooks, httpserver, sql):
    first, second = publish("acme")[0], publish("acme")[0]
    sql("UPDATE lamplighter.webhook_deliveries SET attempts = %s WHERE id = %s", (webhooks.MAX_ATTEMPTS - 1, first))
    httpserver.expect_request("/acme/hook-secret-path").respond_with_data("", status=400)
    with pytest.raises(PermanentFailure, match="10 attempts failed, the last: HTTP 400"):
        deliver("acme", first)
    assert [delivery(sql, d)[:2] for d in (first, second)] == [("failed", 10), ("cancelled", 0)]
    assert sql("SELECT count(*) FROM lamplighter.notifications WHERE kind = 'webhook.endpoint_disabled'") == [(1,)]
    assert not webhooks.disable_endpoint("acme", hooks["acme"][0].id, "again", "http://x/")  # once


def test_a_jobs_last_attempt_ends_its_delivery_though_the_delivery_counted_fewer(hooks, httpserver, sql, run_worker):
    """A job's attempts can run out before its delivery's (attempts that failed before the delivery
    began one: an outage, a crash). Its last attempt fails the delivery and disables the endpoint,
    as running out of delivery attempts does, instead of leaving the delivery pending for ever."""
    httpserver.expect_request("/acme/hook-secret-path").respond_with_data("", status=500)
    [delivery_id] = publish("acme")
    sql("UPDATE lamplighter.webhook_deliveries SET attempts = 2 WHERE id = %s", (delivery_id,))
    sql("UPDATE dramatiq.queue SET attempt = %s WHERE actor_name = 'webhooks.deliver'", (webhooks.MAX_ATTEMPTS - 1,))
    run_worker(threads=2, queues=["webhooks"])
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE actor_name = 'webhooks.deliver'") == [("dead",)],
             message="the job's last attempt ended")
    status, attempts, code, error, _ = delivery(sql, delivery_id)
    assert (status, attempts, code, error) == ("failed", 3, 500, "HTTP 500")
    assert sql("SELECT enabled, disabled_reason FROM lamplighter.webhook_endpoints WHERE id = %s",
               (hooks["acme"][0].id,)) == [(False, "its job's last attempt (10) failed after 3 delivery attempts, "
                                                   "the last: HTTP 500")]
    assert sql("SELECT count(*) FROM lamplighter.notifications WHERE kind = 'webhook.endpoint_disabled'") == [(1,)]


def test_a_refused_address_is_a_failed_attempt(documents_env, sql):
    documents_env.configure(LAMPLIGHTER_OUTBOUND_ALLOW="")
    webhooks.add_endpoint("acme", "http://127.0.0.1:9/hook", by="tests")
    [delivery_id] = publish("acme")
    with pytest.raises(RetryLater):
        deliver("acme", delivery_id)
    status, attempts, _, error, _ = delivery(sql, delivery_id)
    assert (status, attempts) == ("pending", 1) and "refused" in error and "/hook" not in error


def test_a_worker_delivers_and_retries_on_the_schedule(hooks, httpserver, sql, run_worker):
    replies = iter([("no", 503), ("ok", 200)])
    httpserver.expect_request("/acme/hook-secret-path").respond_with_handler(
        lambda request: __import__("werkzeug").Response(*next(replies)))
    [delivery_id] = publish("acme")
    run_worker(threads=2, queues=["webhooks"])
    [(waited,)] = wait_for(lambda: sql("SELECT extract(epoch FROM q.available_at - h.finished_at) FROM dramatiq.queue q "
                                       "JOIN lamplighter.job_history h ON h.job_id = q.message_id "
                                       "WHERE q.actor_name = 'webhooks.deliver' AND q.state = 'queued' AND q.attempt = 1"),
                           message="the first attempt failed and was rescheduled")
    assert 4.4 <= float(waited) <= 5.6
    sql("UPDATE dramatiq.queue SET available_at = now() WHERE actor_name = 'webhooks.deliver'")  # 5 s pass
    wait_for(lambda: delivery(sql, delivery_id)[0] == "delivered", message="delivered on the second attempt")
    assert delivery(sql, delivery_id)[:3] == ("delivered", 2, 200)


def test_webhooks_verbs(documents_env, sql, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "webhooks", "add", "acme", "https://hooks.example/p/s3cret",
                             "--event", "document.classified")
    assert code == 0 and out.startswith("whsec_") and "shown once" in err
    code, out, _ = run_cli(monkeypatch, capsys, "webhooks", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["tenant"], listed["origin"], listed["events"]) == ("acme", "https://hooks.example",
                                                                       ["document.classified"])
    code, new_secret, _ = run_cli(monkeypatch, capsys, "webhooks", "rotate-secret", "acme", str(listed["id"]))
    assert code == 0 and new_secret.startswith("whsec_") and new_secret != out
    code, _, err = run_cli(monkeypatch, capsys, "webhooks", "rotate-secret", "globex", str(listed["id"]))
    assert (code, err.splitlines()[-1]) == (
        1, f"lamplighter webhooks: tenant 'globex' has no webhook endpoint {listed['id']}")
    with pytest.raises(InvalidInput):
        webhooks.add_endpoint("acme", "ftp://x", by="tests")
    assert "s3cret" not in json.dumps(sql("SELECT details FROM lamplighter.audit_log"))
