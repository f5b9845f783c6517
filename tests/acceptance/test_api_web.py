"""`lamplighter web` as the platform runs it: a job enqueued over HTTP (the client distribution's
HttpClient) completes on a real worker process, an idempotent retry returns the same job, and
SIGTERM stops accepting while a request in flight finishes."""
from __future__ import annotations

import json
import signal
import socket
import threading

import psycopg2
import pytest
from lamplighter_client import HttpClient

from domain import tokens
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance


def _token(*scopes: str) -> tuple[str, int]:
    issued = tokens.create_token(name="service", scope_names=scopes, by="tests")
    return issued.secret, issued.token.id


def test_a_job_enqueued_over_http_completes_on_a_real_worker(database_url, sql, web_process, worker_processes):
    web = web_process()
    worker_processes.start("w1", database_url, sql, threads=2, queues=("maintenance",))
    secret, token_id = _token("enqueue", "read")
    client = HttpClient(web.url, secret)
    job_id = client.enqueue("maintenance.ping", note="over http", idempotency_key="order-7")
    assert client.enqueue("maintenance.ping", note="over http", idempotency_key="order-7") == job_id
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (job_id,)) == [("completed",)],
             timeout=30, message="the job completed on the worker")
    shown = client.job(job_id)
    assert shown["enqueued_by"] == f"token:{token_id}" and secret not in json.dumps(shown)
    assert [a["outcome"] for a in shown["attempts"]] == ["completed"]
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(1,)]
    # Access lines are the app's JSON events; uvicorn's own access log is off.
    lines = [json.loads(line) for line in web.log_text().splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line.get("event") == "http_request"]
    assert {"method", "path", "status", "duration_ms"} <= set(requests_logged[-1])
    assert not any(line.get("logger") == "uvicorn.access" for line in lines)
    assert secret not in web.log_text()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_stops_accepting_and_finishes_the_request_in_flight(database_url, sql, web_process):
    web = web_process()
    secret, token_id = _token("enqueue")
    # Hold the Idempotency-Key the request will take: it waits on this transaction, in flight.
    holder = psycopg2.connect(database_url)
    holder.cursor().execute("INSERT INTO lamplighter.idempotency_keys (principal, key, request_hash) "
                            "VALUES (%s, 'in-flight', 'another request')", (f"token:{token_id}",))
    answers = []
    request = threading.Thread(target=lambda: answers.append(
        HttpClient(web.url, secret, retries=0, timeout=60).enqueue("maintenance.ping", idempotency_key="in-flight")))
    request.start()
    try:
        wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'") == [(1,)], message="the request waiting in flight")
        web.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: _refused(web.port), message="new connections refused after SIGTERM")
        assert web.proc.poll() is None and request.is_alive()  # still finishing the request
    finally:
        holder.rollback()  # the key is free: the request takes it and enqueues
        holder.close()
    request.join(timeout=30)
    assert web.proc.wait(timeout=30) == 0
    [job_id] = answers
    assert sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (job_id,)) == [("queued",)]
