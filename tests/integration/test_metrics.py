"""/metrics from the database: outcome counters kept by the finish statement (and the rescue),
unchanged by pruning; two web processes (uvicorn, 127.0.0.1) reporting the same figures; the
read-scope token that protects the route."""
from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import uuid

import dramatiq
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import actors
from domain import tenants, tokens
from domain.outcomes import Cancel, PermanentFailure, RetryLater
from storage import alerts, connection, workers
from storage import settings as settings_module
from storage.queries import queries, run
from tests.conftest import ROOT, lamplighter_env, wait_for

tries: dict[str, int] = {}


@dramatiq.actor(broker=actors.broker, actor_name="tests.metered", queue_name="tests-metrics", max_retries=1,
                time_limit=10_000)
def metered(kind: str, key: str = "") -> str:
    if kind == "permanent":
        raise PermanentFailure("no such account")
    if kind == "cancel":
        raise Cancel("nothing left to do")
    if kind == "flaky":
        tries[key] = tries.get(key, 0) + 1
        if tries[key] == 1:
            raise RetryLater("upstream busy", delay=0)
    return kind


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def of(found: dict, *prefixes: str) -> dict:
    return {key: value for key, value in found.items() if key[0].startswith(prefixes)}


COUNTERS = ("lamplighter_job_outcomes", "lamplighter_job_run_seconds")
AGES = ("lamplighter_queue_oldest_waiting_seconds", "lamplighter_scheduler_lease_age_seconds")


def _run_jobs(run_worker, sql) -> None:
    for kind in ("ok", "ok", "ok", "permanent", "cancel"):
        metered.send(kind)
    metered.send("flaky", key=str(uuid.uuid4()))
    worker = run_worker(queues={"tests-metrics"})
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE state IN ('completed', 'dead', 'cancelled')")
             == [(6,)], message="six jobs finished")
    worker.stop(timeout=10_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_processes(database_url):
    """Two web processes serving the metrics router: uvicorn on 127.0.0.1, each its own process."""
    started = []
    env = lamplighter_env(DATABASE_URL=database_url, LAMPLIGHTER_LEASE_TIMEOUT="600")
    for _ in range(2):
        port = _free_port()
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.metrics_app:app", "--host", "127.0.0.1",
                                    "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append((process, f"http://127.0.0.1:{port}"))

    def answering(base):
        try:
            return requests.get(base + "/metrics", timeout=2).status_code == 401
        except requests.ConnectionError:
            return False

    try:
        for process, base in started:
            wait_for(lambda: process.poll() is not None or answering(base), timeout=30, message=f"{base} answering")
            assert process.poll() is None, process.stderr.read().decode()
        yield [base for _, base in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(timeout=10)


def test_two_web_processes_report_the_same_figures_and_pruning_leaves_the_counters(
        broker, run_worker, sql, web_processes):
    _run_jobs(run_worker, sql)
    # Waiting, scheduled and a paused queue; a live worker; a current scheduler lease; an alert.
    metered.send("ok")
    metered.send_with_options(args=("ok",), delay=3_600_000)
    sql("UPDATE dramatiq.queue SET available_at = lamplighter.now() - interval '90 seconds' "
        "WHERE state = 'queued' AND available_at <= lamplighter.now()")
    sql("INSERT INTO lamplighter.queues (name, paused, changed_by) VALUES ('tests-paused', true, 'tests')")
    sql("INSERT INTO lamplighter.workers (id, hostname, pid, queues, version) "
        "VALUES (gen_random_uuid(), 'elsewhere', 7, '{default}', 'tests')")
    sql("INSERT INTO lamplighter.scheduler_lease VALUES ('scheduler', 'sched:1', now() - interval '5 minutes', "
        "now() - interval '3 seconds', now() + interval '1 hour')")
    alerts.open_or_touch("jobs.dead", "queue", "tests-metrics", {"dead": 1})
    reader = tokens.create_token(name="prometheus", scope_names=["read"], by="tests").secret
    enqueuer = tokens.create_token(name="service", scope_names=["enqueue"], by="tests").secret
    tenants.create_tenant("acme", "Acme", by="tests")
    tenant_reader = tokens.create_token(name="acme", scope_names=["read"], tenant_id="acme", by="tests").secret
    auth = {"Authorization": f"Bearer {reader}"}

    first, second = (requests.get(base + "/metrics", headers=auth, timeout=10) for base in web_processes)
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"].startswith("text/plain; version=")
    a, b = samples(first.text), samples(second.text)
    assert {k: v for k, v in a.items() if k[0] not in AGES} == {k: v for k, v in b.items() if k[0] not in AGES}
    for key in of(a, *AGES):
        assert abs(a[key] - b[key]) < 2, key  # measured at the two scrapes' instants

    label = lambda **labels: frozenset(labels.items())  # noqa: E731
    depth = {dict(k[1])["state"]: v for k, v in a.items()
             if k[0] == "lamplighter_queue_jobs" and dict(k[1])["queue"] == "tests-metrics"}
    assert depth == {"waiting": 1, "scheduled": 1, "running": 0, "dead": 1}
    assert 90 <= a[("lamplighter_queue_oldest_waiting_seconds", label(queue="tests-metrics"))] < 150
    assert a[("lamplighter_queue_paused", label(queue="tests-paused"))] == 1
    assert a[("lamplighter_workers_live", label())] == sql("SELECT count(*) FROM lamplighter.workers")[0][0] >= 1
    assert a[("lamplighter_scheduler_leader", label(holder="sched:1"))] == 1
    assert 3 <= a[("lamplighter_scheduler_lease_age_seconds", label())] < 60
    assert a[("lamplighter_alerts_open", label(rule="jobs.dead"))] == 1
    outcomes = {dict(k[1])["outcome"]: v for k, v in a.items()
                if k[0] == "lamplighter_job_outcomes_total" and dict(k[1])["actor"] == "tests.metered"}
    assert outcomes == {"completed": 4, "failed": 1, "dead": 1, "cancelled": 1, "lost": 0}
    assert a[("lamplighter_job_run_seconds_count", label(actor="tests.metered", outcome="completed"))] == 4
    [(history_seconds,)] = sql("SELECT sum(duration_ms) / 1000 FROM lamplighter.job_history "
                               "WHERE actor_name = 'tests.metered' AND outcome = 'completed'")
    assert abs(a[("lamplighter_job_run_seconds_sum", label(actor="tests.metered", outcome="completed"))]
               - history_seconds) < 1e-6

    # The prune job deletes the finished jobs and their history; the counters stay.
    settings_module.configure(dataclasses.replace(settings_module.get(), completed_retention=60, dead_retention=60))
    sql("UPDATE dramatiq.queue SET finished_at = lamplighter.now() - interval '2 hours' WHERE finished_at IS NOT NULL")
    report = actors.jobs.prune_jobs.fn()
    assert report["completed"]["history_rows"] == 6 and report["dead"]["history_rows"] == 1
    assert sql("SELECT count(*) FROM lamplighter.job_history WHERE actor_name = 'tests.metered'") == [(0,)]
    after = [samples(requests.get(base + "/metrics", headers=auth, timeout=10).text) for base in web_processes]
    assert of(after[0], *COUNTERS) == of(after[1], *COUNTERS) == of(a, *COUNTERS)
    assert of(after[0], "lamplighter_queue_jobs") == of(after[1], "lamplighter_queue_jobs")

    # Protected: a bearer token with the read scope.
    base = web_processes[0]
    refused = requests.get(base + "/metrics", timeout=10)
    assert (refused.status_code, refused.json()["error"], refused.headers["www-authenticate"]) == (
        401, "unauthenticated", "Bearer")
    assert requests.get(base + "/metrics", headers={"Authorization": "Bearer llt_nope"},
                        timeout=10).status_code == 401
    forbidden = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {enqueuer}"}, timeout=10)
    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "forbidden")
    tenant_bound = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {tenant_reader}"}, timeout=10)
    assert (tenant_bound.status_code, tenant_bound.json()["error"]) == (404, "not_found")  # every tenant's figures


def test_lost_attempts_rescued_from_a_dead_worker_are_counted(broker, sql):
    [(before,)] = sql("SELECT count(*) FROM lamplighter.job_counters WHERE outcome = 'lost'")
    job = metered.send("ok").message_id
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = gen_random_uuid(), claim_token = 9, attempt = 1, "
        "started_at = now() - interval '2 minutes', claimed_at = now() - interval '2 minutes' "
        "WHERE message_id = %s", (job,))
    conn = connection.raw_connection("tests-rescue")
    try:
        conn.autocommit = True
        rescue = workers.rescue_lost(conn, lease_seconds=2, server_grace_seconds=0)
    finally:
        conn.close()
    assert rescue.attempts_lost == 1
    assert before == 0
    [(attempts, seconds)] = sql("SELECT sum(attempts), sum(run_seconds) FROM lamplighter.job_counters "
                                "WHERE actor_name = 'tests.metered' AND outcome = 'lost'")
    assert attempts == 1 and 110 < seconds < 300
    # A run of two minutes: bucket 13, i.e. 60 s <= run time < 300 s.
    assert sql("SELECT bucket FROM lamplighter.job_counters WHERE outcome = 'lost'") == [(13,)]


def test_a_finish_sent_twice_counts_once(broker, sql):
    """The finisher re-sends a batch whose COMMIT outcome it did not learn: the attempts it had
    recorded are not recorded again, so they are not counted again."""
    job = metered.send("ok").message_id
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claim_token = 5 WHERE message_id = %s",
        (broker.worker_id, job))
    finish = {"message_id": job, "token": 5, "attempt": 1, "state": "completed", "outcome": "completed",
              "started_at": 1.0, "finished_at": 1.25, "duration_ms": 250.0}
    params = {"finishes": json.dumps([finish]), "worker_id": broker.worker_id,
              "worker_ids": "{%s}" % broker.worker_id}
    assert [run(queries("jobs"), "job_finish_many", params).fetchone()[0] for _ in range(2)] == [1, 0]
    # 0.25 s is the sixth bound: a run time on a bound counts in the bucket above it (width_bucket).
    assert sql("SELECT outcome, bucket, sum(attempts)::int, sum(run_seconds) FROM lamplighter.job_counters "
               "WHERE actor_name = 'tests.metered' GROUP BY 1, 2") == [("completed", 6, 1, 0.25)]


def test_a_scrape_on_a_connection_whose_session_ended_reconnects_instead_of_answering_503(broker, sql):
    """The scrape thread keeps its connection between scrapes; after a restart or a terminated
    backend the next scrape finds it dead on use, and reconnects once rather than answer 503."""
    from console import metrics

    def on_scrape_thread(function):
        return metrics._scrapes.submit(metrics._guarded, function).result()

    assert isinstance(on_scrape_thread(metrics.exposition), bytes)
    [(pid,)] = on_scrape_thread(lambda: connection.init_database().execute_sql("SELECT pg_backend_pid()").fetchall())
    assert sql("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == [(0,)],
             message="the scrape thread's session ended")

    answer = on_scrape_thread(metrics.exposition)
    assert isinstance(answer, bytes), answer.body  # the exposition, not the 503 JSONResponse
    [(again,)] = on_scrape_thread(lambda: connection.init_database().execute_sql("SELECT pg_backend_pid()").fetchall())
    assert again != pid
