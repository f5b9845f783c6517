"""Token refreshes through real workers: a 503 retried after its Retry-After, then a success that
queues its successor under the integration's key from inside the running job; two refreshes of
one integration sent at once to two worker processes make one token call. Tokens appear in no
job argument, history row or log line."""
from __future__ import annotations

import io
import threading
import time

import actors
from storage import logs
from tests.conftest import LOOPBACK, wait_for
from tests.oauth_provider import (CLIENT_SECRET, FIRST_ACCESS, FIRST_REFRESH, acme, answer,  # noqa: F401
                                  configured, connect, provider)

SECRETS = (CLIENT_SECRET, FIRST_ACCESS, FIRST_REFRESH, "at-1-never-logged", "rt-1-never-logged")


def refresh_key_jobs(sql, integration_id: int) -> list[tuple]:
    return sql("SELECT message_id::text, state, enqueued_by FROM dramatiq.queue WHERE unique_key = %s "
               "ORDER BY enqueued_at", (f"refresh-{integration_id}",))


def test_503_then_success_in_a_worker_and_the_refresh_queues_its_successor(acme, provider, run_worker, sql):
    row = connect(acme)
    sql("DELETE FROM dramatiq.queue WHERE unique_key = %s", (f"index-{row.id}",))
    provider.token_script.append(answer(503, {"error": "temporarily_unavailable"}, {"Retry-After": "1"}))
    job_id = actors.integrations.JOBS.schedule_refresh(row.id, 0.0, tenant_id="acme", urgent=True)
    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    try:
        run_worker(threads=2, queues=["integrations"])
        wait_for(lambda: [r[1] for r in refresh_key_jobs(sql, row.id)] == ["completed", "queued"],
                 message="the refresh completed, and its successor")
    finally:
        logs.configure(log_format="json", level="INFO")

    [(parent, _, _), (_, _, successor_by)] = refresh_key_jobs(sql, row.id)  # one pending, never two
    assert parent == job_id
    assert successor_by == f"job:{job_id}"  # queued from inside the running refresh
    attempts = sql("SELECT attempt, outcome, error_message, result_summary FROM lamplighter.job_history "
                   "WHERE job_id = %s ORDER BY attempt", (job_id,))
    assert [(a, o) for a, o, _, _ in attempts] == [(1, "failed"), (2, "completed")]
    assert "HTTP 503" in attempts[0][2]
    assert attempts[1][3] == {"outcome": "refreshed", "expires_in": 3600.0, "rotated": True}
    assert len(provider.token_requests) == 2
    # No secret in the queue's messages, the history or the log lines.
    stored = sql("SELECT message::text, coalesce(last_error, '') FROM dramatiq.queue") + sql(
        "SELECT coalesce(error_message, '') || coalesce(traceback, '') || coalesce(result_summary::text, '') "
        "FROM lamplighter.job_history")
    text = " ".join(" ".join(r) for r in stored) + stream.getvalue()
    assert "integration_refreshed" in stream.getvalue()
    assert [s for s in SECRETS if s in text] == []


def test_two_refreshes_of_one_integration_sent_at_once_make_one_token_call(acme, provider, worker_processes, sql,
                                                                           database_url):
    row = connect(acme, expires_in=300)  # due: 300 s left is within the 5-minute lead
    sql("DELETE FROM dramatiq.queue WHERE actor_name = 'integrations.index_files'")
    provider.hold = threading.Event()
    env = {"LAMPLIGHTER_ENCRYPTION_KEYS": acme.encryption_keys, "LAMPLIGHTER_OUTBOUND_ALLOW": LOOPBACK}
    for name in ("a", "b"):
        worker_processes.start(name, database_url, sql, threads=2, queues=("integrations",), **env)
    refresh = actors.integrations.refresh_tokens
    sent = refresh.broker.enqueue_many([refresh.message_with_options(args=(row.id,),
                                                                    concurrency_key=f"integration-{row.id}")
                                        for _ in range(2)])
    ids = [m.message_id for m in sent]

    def states() -> list[str]:
        return [s for (s,) in sql("SELECT state FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
                                  "ORDER BY state", (ids,))]

    assert provider.entered.wait(30), worker_processes.logs()
    # While one is inside the token call, the other waits for the integration's slot, although
    # four worker threads are free.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert states() == ["queued", "running"], worker_processes.describe()
    provider.hold.set()
    wait_for(lambda: states() == ["completed", "completed"], message="both refreshes done")

    assert len(provider.token_requests) == 1
    results = sorted(r["outcome"] for (r,) in sql("SELECT result_summary FROM lamplighter.job_history "
                                                  "WHERE job_id = ANY(%s::uuid[])", (ids,)))
    assert results == ["already_refreshed", "refreshed"]
    assert [state for _, state, _ in refresh_key_jobs(sql, row.id)] == ["queued"]  # the next, at T-5 min
    for worker in worker_processes.started:
        log = worker.log.read_text(errors="replace")
        assert [s for s in SECRETS if s in log] == [], worker.name
