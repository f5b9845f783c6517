"""The path enqueue -> claim -> actor -> domain -> storage -> history, on a real PostgreSQL and
a real dramatiq Worker."""
import datetime
import json
import uuid

import dramatiq
import pytest

import actors
from storage import engine as broker_module
from storage import connection, jobs, workers
from tests.conftest import wait_for

calls: dict[str, int] = {}


@dramatiq.actor(broker=actors.broker, actor_name="tests.flaky", queue_name="tests", max_retries=2,
                min_backoff=10, max_backoff=20, time_limit=10_000)
def flaky(key: str, fail_times: int) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= fail_times:
        raise RuntimeError(f"attempt {calls[key]} of {key} failed on purpose")
    return "done"


def _state(job_id):
    return jobs.get(job_id).state


def test_ping_runs_once_and_leaves_a_history_row(broker, run_worker, sql):
    run_worker()
    message = actors.maintenance.ping.send(note="hello")
    wait_for(lambda: _state(message.message_id) == "completed", message="ping completed")
    job = jobs.get(message.message_id)
    assert job.attempt == 1
    assert job.enqueued_by.startswith("python:")
    [attempt] = job.attempts
    assert attempt.outcome == "completed"
    assert attempt.duration_ms is not None and attempt.duration_ms >= 0
    assert attempt.result_summary["note"] == "hello"
    assert attempt.finished_at >= attempt.started_at
    assert attempt.worker_id == uuid.UUID(broker.worker_id)


def test_failures_are_retried_then_dead_with_every_attempt_recorded(broker, run_worker):
    run_worker()
    ok = flaky.send("ok-after-1", 1)
    doomed = flaky.send("never", 99)
    wait_for(lambda: _state(ok.message_id) == "completed", message="retried job completes")
    wait_for(lambda: _state(doomed.message_id) == "dead", message="job out of attempts is dead")
    assert [a.outcome for a in jobs.get(ok.message_id).attempts] == ["failed", "completed"]
    dead = jobs.get(doomed.message_id)
    assert [a.outcome for a in dead.attempts] == ["failed", "failed", "dead"]
    assert dead.attempt == 3 and dead.max_attempts == 3
    assert dead.attempts[-1].error_type == "RuntimeError"
    assert "attempt 3 of never failed on purpose" in dead.attempts[-1].error_message
    assert "Traceback" in dead.attempts[-1].traceback
    assert dead.last_error.startswith("RuntimeError: attempt 3")


def test_operator_retry_redrives_a_dead_job(broker, run_worker):
    calls.pop("redrive", None)
    message = flaky.send("redrive", 3)
    run_worker()
    wait_for(lambda: _state(message.message_id) == "dead", message="dead")
    jobs.requeue(message.message_id)
    wait_for(lambda: _state(message.message_id) == "completed", message="redriven job completes")
    assert [a.attempt for a in jobs.get(message.message_id).attempts] == [1, 2, 3, 4]


def test_cancel_waiting_job(broker, sql):
    message = actors.maintenance.ping.send_with_options(kwargs={"note": "later"}, delay=3_600_000)
    assert jobs.cancel(message.message_id, by="test") == "cancelled"
    assert _state(message.message_id) == "cancelled"
    with pytest.raises(jobs.JobStateConflict):
        jobs.cancel(message.message_id, by="test")


def test_delayed_job_waits_in_the_table_not_in_memory(broker, run_worker, sql):
    run_worker()
    later = actors.maintenance.ping.send_with_options(kwargs={"note": "later"}, delay=3_600_000)
    now = actors.maintenance.ping.send(note="now")
    wait_for(lambda: _state(now.message_id) == "completed", message="immediate job")
    assert _state(later.message_id) == "queued"
    assert later.message_id not in broker.inflight
    [(seconds,)] = sql("SELECT extract(epoch FROM available_at - lamplighter.now()) FROM dramatiq.queue "
                       "WHERE message_id = %s", (later.message_id,))
    assert 3500 < seconds <= 3600


def test_twenty_thousand_job_backlog_drains_with_default_settings(broker, run_worker, sql):
    """Stock dramatiq-pg stalls here: an advisory lock per prefetched message fills the shared
    lock table. We hold none, and every job runs exactly once."""
    messages = [actors.maintenance.ping.message(note=str(i)) for i in range(20_000)]
    for start in range(0, len(messages), 5_000):
        broker.enqueue_many(messages[start:start + 5_000])
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'queued'") == [(20_000,)]
    run_worker(threads=8)
    peak_locks = 0

    def drained():
        nonlocal peak_locks
        peak_locks = max(peak_locks, sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                                         "(SELECT oid FROM pg_database WHERE datname = current_database())")[0][0])
        return sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'completed'")[0][0] == 20_000

    wait_for(drained, timeout=240, interval=0.5, message="20,000 jobs completed")
    assert peak_locks == 0
    assert sql("SELECT count(*), count(DISTINCT job_id) FROM lamplighter.job_history") == [(20_000, 20_000)]
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE attempt <> 1") == [(0,)]


def test_transactional_enqueue_follows_the_callers_transaction(broker, sql):
    db = connection.database
    with db.atomic() as txn:
        rolled_back = actors.maintenance.ping.send(note="rollback")
        txn.rollback()
    with db.atomic():
        committed = actors.maintenance.ping.send(note="commit")
        # Not visible to other connections (workers) before the commit.
        assert sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = %s", (committed.message_id,)) == [(0,)]
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = %s", (rolled_back.message_id,)) == [(0,)]
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = %s", (committed.message_id,)) == [(1,)]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"note": datetime.datetime(2026, 1, 1)}, "isoformat"),
    ({"note": uuid.uuid4()}, "not JSON serializable"),
    ({"note": "x" * 300_000}, "over the"),
])
def test_bad_payload_fails_at_send_not_in_the_worker(broker, sql, kwargs, fragment):
    with pytest.raises(broker_module.PayloadError, match=fragment):
        actors.maintenance.ping.send(**kwargs)
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]


@pytest.mark.parametrize("message, reason", [
    ('[1, 2]', "not an object"),
    ('{"actor_name": "maintenance.ping", "args": "nope", "kwargs": {}, "options": {}}', "'args' must be a list"),
    ('{"args": [], "kwargs": {}, "options": {}}', "'actor_name' is missing"),
    ('{"actor_name": "no.such.actor", "args": [], "kwargs": {}, "options": {}}', "unknown actor"),
    ('{"actor_name": "maintenance.ping", "args": [1, 2, 3], "kwargs": {}, "options": {}}', "undecodable"),
])
def test_bad_rows_inserted_by_hand_go_dead_with_a_reason_and_the_queue_keeps_moving(
        broker, run_worker, sql, message, reason):
    bad_id = str(uuid.uuid4())
    sql("INSERT INTO dramatiq.queue (message_id, queue_name, state, message) VALUES (%s, 'maintenance', 'queued', %s)",
        (bad_id, message))
    run_worker()
    good = actors.maintenance.ping.send(note="after the bad one")
    wait_for(lambda: _state(good.message_id) == "completed", message="good job after a bad row")
    wait_for(lambda: _state(bad_id) == "dead", message="bad row dead-lettered")
    assert reason in jobs.get(bad_id).last_error


def test_stock_dramatiq_pg_client_can_enqueue(broker, run_worker, database_url, sql):
    """A service with only dramatiq + dramatiq-pg installed, immediate and delayed sends."""
    from dramatiq_pg import PostgresBroker

    stock = PostgresBroker(url=database_url, results=False)
    stock.declare_actor(dramatiq.Actor(lambda note=None: None, broker=stock, actor_name="maintenance.ping",
                                       queue_name="maintenance", priority=0, options={}))
    stock_ping = stock.get_actor("maintenance.ping")
    now = stock_ping.send(note="from stock client")
    later = stock_ping.send_with_options(kwargs={"note": "stock delayed"}, delay=5_000)
    stock.pool.closeall()
    row = sql("SELECT queue_name, actor_name, message->'options' ? 'eta', available_at > lamplighter.now() + "
              "interval '3 seconds' FROM dramatiq.queue WHERE message_id = %s", (later.message_id,))
    assert row == [("maintenance", "maintenance.ping", False, True)]
    run_worker()
    wait_for(lambda: _state(now.message_id) == "completed", message="stock client's message consumed")
    assert jobs.get(now.message_id).attempts[0].result_summary["note"] == "from stock client"


def test_jobs_of_a_dead_worker_are_rescued(broker, sql):
    """A worker that stops heartbeating (kill -9) has its jobs handed back; a started attempt
    is recorded as lost."""
    started = actors.maintenance.ping.send(note="was running")
    claimed = actors.maintenance.ping.send(note="was only claimed")
    dead_worker = str(uuid.uuid4())
    sql("INSERT INTO lamplighter.workers (id, hostname, pid, queues, version, heartbeat_at) "
        "VALUES (%s, 'gone', 1, '{maintenance}', 'x', lamplighter.now() - interval '1 hour')", (dead_worker,))
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claimed_at = lamplighter.now() - interval '1 hour'",
        (dead_worker,))
    sql("UPDATE dramatiq.queue SET attempt = 1, started_at = lamplighter.now() - interval '1 hour' "
        "WHERE message_id = %s", (started.message_id,))
    conn = connection.raw_connection()
    with conn:  # one transaction, committed
        rescue = workers.rescue_lost(conn, lease_seconds=2, server_grace_seconds=0)
    assert (rescue.workers_expired, rescue.jobs_rescued, rescue.attempts_lost, rescue.unstarted_noted) == (1, 2, 1, 1)
    lost = jobs.get(started.message_id)
    assert lost.state == "queued" and lost.attempt == 1
    assert [a.outcome for a in lost.attempts] == ["lost"]
    assert sql("SELECT count(*) FROM lamplighter.job_events WHERE job_id = %s", (started.message_id,)) == [(0,)]
    kept = jobs.get(claimed.message_id)
    assert kept.state == "queued" and kept.attempt == 0 and kept.attempts == ()
    # Its start was not recorded: it may have run in the worker's last flush window (a short job's
    # start goes with its finish). No attempt is counted, and its record says what happened.
    (event,) = sql("SELECT event, requested_by, detail FROM lamplighter.job_events WHERE job_id = %s",
                   (claimed.message_id,))
    assert event[:2] == ("rescued", "lamplighter")
    assert event[2]["worker_id"] == dead_worker and event[2]["attempt"] == 1 and event[2]["start_recorded"] is False
    assert "stopped heartbeating" in event[2]["reason"]
    again = workers.rescue_lost(conn, lease_seconds=2, server_grace_seconds=0)
    assert (again.jobs_rescued, again.unstarted_noted) == (0, 0)
    assert sql("SELECT count(*) FROM lamplighter.job_events WHERE job_id = %s", (claimed.message_id,)) == [(1,)]


def test_a_late_finish_cannot_overwrite_a_newer_attempt(broker, sql):
    message = actors.maintenance.ping.send(note="x")
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claim_token = 7, attempt = 2 "
        "WHERE message_id = %s", (broker.worker_id, message.message_id))
    late = [{"message_id": message.message_id, "token": 7, "attempt": 1, "state": "completed", "outcome": "completed",
             "started_at": 1767225500.0, "finished_at": 1767225600.0}]
    conn = connection.raw_connection()
    with conn:
        cur = conn.cursor()
        cur.execute(jobs.SQL["job_finish_many"], {"finishes": json.dumps(late), "worker_id": broker.worker_id,
                                                  "worker_ids": "{%s}" % broker.worker_id})
        assert cur.fetchone() == (0,)
    assert _state(message.message_id) == "running"
    assert sql("SELECT count(*) FROM lamplighter.job_history") == [(0,)]


def test_an_actors_own_log_lines_carry_its_job(broker, run_worker):
    import io

    import dramatiq
    import structlog

    from storage import logs

    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)

    @dramatiq.actor(queue_name="maintenance", actor_name="tests.logging_actor", max_retries=0)
    def logging_actor(tenant):
        structlog.get_logger("domain.test").info("inside_the_job", tenant_seen=tenant)

    message = logging_actor.send_with_options(args=("acme",), tenant_id="acme")
    run_worker(threads=1)
    lines = wait_for(lambda: [json.loads(x) for x in stream.getvalue().splitlines() if '"inside_the_job"' in x],
                     timeout=20, message="the actor's log line")
    assert {k: lines[0].get(k) for k in ("job_id", "actor", "attempt", "queue", "tenant_id")} == {
        "job_id": message.message_id, "actor": "tests.logging_actor", "attempt": 1, "queue": "maintenance",
        "tenant_id": "acme"}


def test_a_finished_job_writes_one_line_with_its_fields(broker, run_worker):
    """The line operators rely on, written by the log writer thread (storage/logs.py JobLogger)."""
    import io

    from storage import logs

    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    try:
        message = actors.maintenance.ping.send_with_options(kwargs={"note": "x"}, tenant_id="acme")
        run_worker(threads=1)
        lines = wait_for(lambda: [json.loads(x) for x in stream.getvalue().splitlines()
                                  if message.message_id in x and '"job_completed"' in x],
                         timeout=20, message="the job_completed line")
    finally:
        logs.configure(log_format="json", level="INFO")
    assert len(lines) == 1
    line = lines[0]
    assert sorted(line) == sorted(["event", "job_id", "actor", "attempt", "queue", "tenant_id", "duration_ms",
                                   "level", "logger", "timestamp"])
    assert {k: line[k] for k in ("event", "job_id", "actor", "attempt", "queue", "tenant_id", "level", "logger")} == {
        "event": "job_completed", "job_id": message.message_id, "actor": "maintenance.ping", "attempt": 1,
        "queue": "maintenance", "tenant_id": "acme", "level": "info", "logger": "lamplighter.broker"}
    assert isinstance(line["duration_ms"], float) and line["timestamp"].endswith("Z")
