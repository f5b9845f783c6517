"""The queue engine under faults a review found (issue: "Queue engine, second pass"): refused
finishes, server errors that are not disconnects, re-sends of a live message id, a saturated
concurrency key, the clock an unknown actor's grace is measured by, and SQL enqueue right after
the release step. Each test failed on the engine before its fix."""
from __future__ import annotations

import json
import threading
import uuid

import dramatiq
import psycopg2
import pytest

import actors
from storage import connection, jobs, queries
from storage.engine import connection as engine_connection
from tests.conftest import wait_for

release_gate = threading.Event()


@dramatiq.actor(broker=actors.broker, actor_name="tests.unstorable", queue_name="tests-faults", max_retries=0,
                time_limit=10_000)
def unstorable(kind: str) -> str:
    if kind == "error":
        raise RuntimeError("a\x00b")
    if kind == "result":
        return "lone \ud800 surrogate and a \x00 NUL"
    return "ok"


@dramatiq.actor(broker=actors.broker, actor_name="tests.gated", queue_name="tests-faults", max_retries=0,
                time_limit=30_000)
def gated(tag: str) -> str:
    release_gate.wait(20)
    return tag


@dramatiq.actor(broker=actors.broker, actor_name="tests.successor", queue_name="tests-faults", max_retries=0,
                time_limit=10_000)
def successor(key: str, generation: int) -> None:
    """The token-refresh pattern: a running job schedules the next one under its own key."""
    if generation < 1:
        successor.send_with_options(args=(key, generation + 1), unique_key=key, delay=100)


def _history(sql, job_id):
    return sql("SELECT attempt, outcome, error_type, error_message, result_summary FROM lamplighter.job_history "
               "WHERE job_id = %s ORDER BY attempt", (job_id,))


# ---- 2: a finish the database refuses ------------------------------------------------------

def test_error_text_with_a_nul_byte_is_recorded_not_dropped(broker, run_worker, sql):
    job_id = unstorable.send("error").message_id
    run_worker(threads=2, queues=["tests-faults"])
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (job_id,)) == [("dead",)],
             timeout=15, message="the failed job recorded as dead")
    [(attempt, outcome, error_type, error_message, _)] = _history(sql, job_id)
    assert (attempt, outcome, error_type) == (1, "dead", "RuntimeError")
    assert error_message.startswith("a") and error_message.endswith("b") and "\x00" not in error_message


def test_a_result_with_a_lone_surrogate_is_recorded(broker, run_worker, sql):
    job_id = unstorable.send("result").message_id
    run_worker(threads=2, queues=["tests-faults"])
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (job_id,)) == [("completed",)],
             timeout=15, message="the job recorded as completed")
    [(_, outcome, _, _, summary)] = _history(sql, job_id)
    assert outcome == "completed" and summary.startswith("lone ") and summary.endswith(" NUL")


# ---- 3: a running job's successor under its own unique key ----------------------------------

def test_a_woken_job_gives_its_unique_key_to_its_successor(broker, run_worker, sql):
    """An idle worker woken for the job: the job's claim must be visible to the job's own
    successor enqueue (the claim committed before the job starts), or the send finds the key
    held by a 'queued' job and returns the parent's id: the successor is lost. (It was, with
    the held claim's COMMIT delayed 0.3 s, on the engine of ea99965.)"""
    run_worker(threads=2, queues=["tests-faults"])
    wait_for(lambda: getattr(broker.consumers.get("tests-faults"), "listening", False), message="consumer idle")
    key = f"refresh-{uuid.uuid4().hex[:8]}"
    first = successor.send_with_options(args=(key, 0), unique_key=key).message_id
    rows = wait_for(lambda: (found := sql("SELECT message_id::text, state FROM dramatiq.queue WHERE unique_key = %s "
                                          "ORDER BY enqueued_at", (key,)))
                    and all(state == "completed" for _, state in found) and len(found) == 2 and found,
                    timeout=15, message="parent and successor completed")
    assert rows[0][0] == first and rows[1][0] != first


# ---- 4: server errors that are not a lost connection ----------------------------------------

@pytest.mark.parametrize("statement, sqlstate", [
    ("SET statement_timeout = 1; SELECT pg_sleep(1)", "57014"),
    ("SET lock_timeout = 1; LOCK TABLE public.held_by_test", "55P03"),
])
def test_statement_errors_are_not_taken_for_disconnects(database_url, sql, statement, sqlstate):
    sql("CREATE TABLE public.held_by_test (x int)")
    holder = psycopg2.connect(database_url)
    holder.cursor().execute("LOCK TABLE public.held_by_test")
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with pytest.raises(psycopg2.OperationalError) as raised:
            conn.cursor().execute(statement)
        assert raised.value.pgcode == sqlstate
        assert not engine_connection.disconnected(raised.value)
    finally:
        conn.close()
        holder.close()


def test_a_terminated_backend_is_a_disconnect(database_url, sql):
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    pid = conn.info.backend_pid
    sql("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    with pytest.raises(psycopg2.Error) as raised:
        conn.cursor().execute("SELECT 1")
    assert engine_connection.disconnected(raised.value)


def test_one_refused_finish_does_not_hold_back_the_others(broker, run_worker, sql, database_url):
    """A lock timeout (55P03) on one job's finish: the finisher retries a few times, then
    splits the batch, so the other finishes land while that row is locked; the locked one is
    recorded once its lock is gone."""
    [(dbname,)] = sql("SELECT current_database()")
    sql(f'ALTER DATABASE "{dbname}" SET lock_timeout = \'200ms\'')
    release_gate.clear()
    held = gated.send("held").message_id
    run_worker(threads=4, queues=["tests-faults"])
    wait_for(lambda: sql("SELECT started_at IS NOT NULL FROM dramatiq.queue WHERE message_id = %s",
                         (held,)) == [(True,)], timeout=15, message="the held job started")
    locker = psycopg2.connect(database_url)
    try:
        locker.cursor().execute("SELECT 1 FROM dramatiq.queue WHERE message_id = %s FOR UPDATE", (held,))
        release_gate.set()
        others = [unstorable.send("plain").message_id for _ in range(5)]
        wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
                             "AND state = 'completed'", (others,)) == [(5,)],
                 timeout=20, message="the other jobs recorded while one row is locked")
        assert sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (held,)) == [("running",)]
    finally:
        locker.rollback()
        locker.close()
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (held,)) == [("completed",)],
             timeout=20, message="the held job recorded once its lock is gone")
    assert [(a, o) for a, o, *_ in _history(sql, held)] == [(1, "completed")]


# ---- 5: a re-send of a live message id --------------------------------------------------------

def test_resending_a_running_message_does_not_take_it_over(broker, sql):
    message = actors.maintenance.ping.message(note="x")
    broker.enqueue(message)
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claimed_at = now(), attempt = 1 "
        "WHERE message_id = %s", (broker.worker_id, message.message_id))
    again = broker.enqueue(message)
    assert again.message_id == message.message_id
    assert sql("SELECT state, worker_id::text, attempt FROM dramatiq.queue WHERE message_id = %s",
               (message.message_id,)) == [("running", broker.worker_id, 1)]
    broker.enqueue_many([message])
    assert sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (message.message_id,)) == [("running",)]


def test_resending_a_finished_message_queues_it_again(broker, sql):
    message = actors.maintenance.ping.message(note="x")
    broker.enqueue(message)
    sql("UPDATE dramatiq.queue SET state = 'completed', finished_at = now() WHERE message_id = %s",
        (message.message_id,))
    broker.enqueue(message)
    assert sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (message.message_id,)) == [("queued",)]


# ---- 6: a saturated concurrency key's backlog ---------------------------------------------------

def _claim_plan(sql, worker_id, *, prepared=False):
    """EXPLAIN ANALYZE of a claim (rolled back). ``prepared``: as the engine runs it, a prepared
    statement on a connection set up like a consumer's (generic plans); otherwise as text, as
    behind a transaction-mode pooler (LAMPLIGHTER_PREPARED_STATEMENTS=false)."""
    sql("ANALYZE dramatiq.queue")
    conn = connection.raw_connection("tests-explain")
    try:
        cur = conn.cursor()
        params = {"queue": "tests-faults", "limit": 50, "worker_id": worker_id, "token": 1}
        if prepared:
            cur.execute(engine_connection.GENERIC_PLANS)
            statement = queries.prepared_statement("jobs", "job_claim_batch")
            cur.execute(statement.prepare)
            text = cur.mogrify(statement.execute, params).decode()
        else:
            text = cur.mogrify(jobs.SQL["job_claim_batch"], params).decode()
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text)
        plan = cur.fetchone()[0][0]
        claimed = plan["Plan"].get("Actual Rows", 0)
        conn.rollback()
    finally:
        conn.close()
    return plan, claimed


def _plan_totals(node, key):
    return node.get(key, 0) * node.get("Actual Loops", 1) + sum(_plan_totals(c, key) for c in node.get("Plans", []))


@pytest.mark.parametrize("prepared", [True, False], ids=["generic-plan", "text"])
def test_a_saturated_keys_backlog_costs_a_claim_nothing(broker, sql, prepared):
    """100,000 jobs queued behind one concurrency key whose only slot is taken, and ten free
    jobs: the claim reads the free jobs, not the backlog (it used to filter out every one of
    the 100,000 rows, and look up a slot for each, on every claim of every consumer). Both as
    the engine runs it (a prepared statement's generic plan) and as text (a custom plan)."""
    sql("INSERT INTO lamplighter.concurrency_slots (key, slot, holder) VALUES ('full', 1, gen_random_uuid())")
    sql("""INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, concurrency_key,
                                       concurrency_limit, available_at, enqueued_at)
           SELECT gen_random_uuid(), 'tests-faults', 'tests.gated', '{}'::jsonb, 'queued', 'full', 1,
                  now() - interval '1 hour', now()
           FROM generate_series(1, 100000)""")
    free = [gated.send(f"free-{i}").message_id for i in range(10)]
    plan, _ = _claim_plan(sql, broker.worker_id, prepared=prepared)
    root = plan["Plan"]
    assert root["Actual Rows"] == 10  # it did claim the ten free jobs (rolled back)
    assert _plan_totals(root, "Rows Removed by Filter") < 1000
    assert _plan_totals(root, "Actual Rows") < 2000
    claimed = sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'queued' AND message_id = ANY(%s::uuid[])",
                  (free,))
    assert claimed == [(10,)]  # the EXPLAIN ANALYZE was rolled back


def _held_here_among_5000_running_elsewhere(broker, sql) -> list[str]:
    """5,000 jobs running under another worker (a large deployment's running and claimed rows)
    and 16 claimed here (token 7, attempt 1); the statistics know it."""
    other = str(uuid.uuid4())
    sql("INSERT INTO lamplighter.workers (id, hostname, pid, queues, version) VALUES (%s, 'h', 1, '{x}', 't')",
        (other,))
    sql("""INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, worker_id, claim_token,
                                       claimed_at, attempt)
           SELECT gen_random_uuid(), 'tests-faults', 'tests.gated', '{}'::jsonb, 'running', %s, 1, now(), 1
           FROM generate_series(1, 5000)""", (other,))
    mine = [actors.maintenance.ping.send(note=str(i)).message_id for i in range(16)]
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claim_token = 7, claimed_at = now(), "
        "attempt = 1 WHERE message_id = ANY(%s::uuid[])", (broker.worker_id, mine))
    sql("ANALYZE dramatiq.queue")
    return mine


def _explain_as_the_engine_runs_it(name: str, params: dict) -> dict:
    """EXPLAIN ANALYZE of a prepared statement with the engine's generic plans; rolled back."""
    conn = connection.raw_connection("tests-explain")
    try:
        cur = conn.cursor()
        cur.execute(engine_connection.GENERIC_PLANS)
        statement = queries.prepared_statement("jobs", name)
        cur.execute(statement.prepare)
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + cur.mogrify(statement.execute, params).decode())
        root = cur.fetchone()[0][0]["Plan"]
        conn.rollback()
    finally:
        conn.close()
    return root


def test_a_finish_reads_its_own_workers_rows_not_every_running_job(broker, sql):
    """The finish, as the engine runs it (prepared, generic plan), reads this worker's rows. It
    used to hash-join every running row of the deployment (88 us a job instead of 57 with 2,000
    of them)."""
    mine = _held_here_among_5000_running_elsewhere(broker, sql)
    finishes = [{"message_id": m, "token": 7, "attempt": 1, "state": "completed", "outcome": "completed",
                 "started_at": 1.0, "finished_at": 2.0, "duration_ms": 1.0} for m in mine]
    root = _explain_as_the_engine_runs_it("job_finish_many", {
        "finishes": json.dumps(finishes), "worker_id": broker.worker_id, "worker_ids": "{%s}" % broker.worker_id})
    assert _plan_totals(root, "Actual Rows") < 1000, root
    assert sql("SELECT count(*) FROM lamplighter.job_history WHERE job_id = ANY(%s::uuid[])", (mine,)) == [(0,)]


def test_a_release_or_hand_back_reads_its_own_workers_rows_not_every_running_job(broker, sql):
    """Claimed jobs handed back unstarted (a job that waited here while another worker had a free
    thread, a shutdown), attempts handed back at the end of the grace, and the rows of a claim
    whose answer was lost: like the finish, found among this worker's rows, not by a join over
    (or a scan of) every running row of the deployment."""
    mine = _held_here_among_5000_running_elsewhere(broker, sql)
    worker_ids = "{%s}" % broker.worker_id
    released = _explain_as_the_engine_runs_it("job_release_unstarted", {
        "jobs": json.dumps([{"message_id": m, "token": 7} for m in mine]), "worker_ids": worker_ids})
    assert _plan_totals(released, "Actual Rows") < 1000, released
    handed = _explain_as_the_engine_runs_it("job_hand_back_started", {
        "jobs": json.dumps([{"message_id": m, "token": 7, "attempt": 1, "reason": "test"} for m in mine]),
        "worker_id": broker.worker_id, "worker_ids": worker_ids})
    assert _plan_totals(handed, "Actual Rows") < 1000, handed
    # A claim whose answer was lost with its connection: its token's rows go back (run as text).
    conn = connection.raw_connection("tests-explain")
    try:
        cur = conn.cursor()
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + cur.mogrify(
            jobs.SQL["job_release_lost_claim"], {"tokens": [7], "worker_ids": [broker.worker_id]}).decode())
        lost_claim = cur.fetchone()[0][0]["Plan"]
        conn.rollback()
    finally:
        conn.close()
    read = _plan_totals(lost_claim, "Actual Rows") + _plan_totals(lost_claim, "Rows Removed by Filter")
    assert read < 1000, lost_claim
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) AND state = 'running'",
               (mine,)) == [(16,)]  # EXPLAIN ANALYZE ran them, rolled back


# ---- 7: one clock ---------------------------------------------------------------------------------

def test_an_unknown_actors_grace_runs_on_the_database_clock(broker, run_worker, sql, database_url):
    """The database clock runs an hour behind this process: a job just enqueued is an hour old
    by the process clock. Its grace (1 s in tests) must be measured by the database's clock,
    which wrote enqueued_at: the job waits for a worker that knows its actor first."""
    [(dbname,)] = sql("SELECT current_database()")
    sql(f'ALTER DATABASE "{dbname}" SET lamplighter.clock_offset = \'-3600\'')
    conn = connection.raw_connection("tests-sql-enqueue")
    conn.autocommit = True
    job_id = str(uuid.uuid4())
    message = {"queue_name": "tests-faults", "actor_name": "tests.not_deployed_yet", "args": [], "kwargs": {},
               "options": {}, "message_id": job_id, "message_timestamp": 0}
    conn.cursor().execute("INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, "
                          "available_at, enqueued_at) VALUES (%s, 'tests-faults', 'tests.not_deployed_yet', %s, "
                          "'queued', lamplighter.now(), lamplighter.now())", (job_id, json.dumps(message)))
    conn.close()
    run_worker(threads=1, queues=["tests-faults"])
    seen = wait_for(lambda: sql("SELECT state, last_error FROM dramatiq.queue WHERE message_id = %s "
                                "AND last_error IS NOT NULL", (job_id,)), timeout=15, message="a decision")
    assert seen[0][0] == "queued" and "waiting for a worker that knows it" in seen[0][1]
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (job_id,)) == [("dead",)],
             timeout=15, message="dead once the grace is over")


# ---- 8: SQL enqueue right after the release step ---------------------------------------------------

def test_sql_enqueue_works_right_after_migrate(database_url, sql):
    from console import cli

    sql("DELETE FROM lamplighter.actors")
    assert cli.main(["migrate"]) == 0
    [(job_id,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '{\"note\": \"hi\"}')")
    assert sql("SELECT actor_name, state FROM dramatiq.queue WHERE message_id = %s", (job_id,)) == [
        ("maintenance.ping", "queued")]


def test_the_heartbeat_hands_back_rows_this_worker_holds_but_no_longer_runs(broker, sql):
    """A finish the database kept refusing until the finisher gave up leaves the row 'running'
    under a live worker: the heartbeat's reconciliation sends it back to the queue as a lost
    attempt. Rows the worker still runs, or has a write pending for, are left alone."""
    from storage.engine.presence import Presence

    stray, running, pending = (actors.maintenance.ping.send(note=n).message_id for n in ("stray", "run", "pend"))
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claim_token = 5, attempt = 1, "
        "started_at = now() - interval '1 hour', claimed_at = now() - interval '1 hour'", (broker.worker_id,))
    presence = Presence(broker, ["maintenance"])
    broker.inflight[running] = object()  # only its key matters to the reconciliation

    class Pending:
        unrecorded = {pending}

    broker.finisher, finisher = Pending(), broker.finisher
    try:
        presence.reconcile(presence.conn.get())
    finally:
        broker.finisher = finisher
        broker.inflight.pop(running, None)
        presence.conn.close()
    states = dict(sql("SELECT message_id::text, state FROM dramatiq.queue"))
    assert (states[stray], states[running], states[pending]) == ("queued", "running", "running")
    assert sql("SELECT attempt, outcome FROM lamplighter.job_history WHERE job_id = %s", (stray,)) == [(1, "lost")]
