"""Job semantics on a real PostgreSQL and a real dramatiq Worker: retry policies and outcomes,
dead jobs and redrive, unique keys, the SQL enqueue function, time and age limits,
cancellation, concurrency limits, unknown actors, bad rows, pruning."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid

import dramatiq
import psycopg2
import pytest

import actors
import tests.worker_app as app
from console import cli
from domain.outcomes import Cancel, PermanentFailure, RetryLater, parse_retry_after
from storage import engine as broker_module
from storage import connection, jobs
from storage import settings as settings_module
from tests.conftest import wait_for

attempts: dict[str, int] = {}
running: dict[str, int] = {"now": 0, "peak": 0}
running_lock = threading.Lock()


class NotWorthRetrying(Exception):
    pass


def _count(key: str) -> int:
    attempts[key] = attempts.get(key, 0) + 1
    return attempts[key]


@dramatiq.actor(broker=actors.broker, actor_name="tests.scheduled", queue_name="tests", max_retries=5,
                retry_schedule=[60, 300, 900, 3600, 14400], time_limit=10_000)
def scheduled(key: str) -> None:
    _count(key)
    raise RuntimeError("upstream down")


@dramatiq.actor(broker=actors.broker, actor_name="tests.backoff", queue_name="tests", max_retries=5,
                min_backoff=10_000_000, max_backoff=60_000, time_limit=10_000)
def backoff(key: str) -> None:
    _count(key)
    raise RuntimeError("still down")


@dramatiq.actor(broker=actors.broker, actor_name="tests.outcome", queue_name="tests", max_retries=5,
                throws=(NotWorthRetrying,), time_limit=10_000)
def outcome(kind: str, key: str = "", delay: float | None = None) -> str:
    n = _count(key or kind)
    if kind == "permanent":
        raise PermanentFailure("account already exists upstream")
    if kind == "throws":
        raise NotWorthRetrying("declared permanent by throws")
    if kind == "retry_later" and n == 1:
        raise RetryLater("rate limited", delay=delay)
    if kind == "cancel":
        raise Cancel("nothing left to do")
    if kind == "fail_once" and n == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@dramatiq.actor(broker=actors.broker, actor_name="tests.fetch", queue_name="tests", max_retries=3,
                retry_schedule=[900], time_limit=10_000)
def fetch(url: str) -> int:
    from actors.outbound import Outbound

    return Outbound().get(url).status_code


@dramatiq.actor(broker=actors.broker, actor_name="tests.slow_steps", queue_name="tests", max_retries=1,
                min_backoff=100, max_backoff=100, time_limit=300)
def slow_steps(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)


@dramatiq.actor(broker=actors.broker, actor_name="tests.aged", queue_name="tests", max_retries=3, max_age=1_000,
                time_limit=10_000)
def aged() -> str:
    return "ran"


@dramatiq.actor(broker=actors.broker, actor_name="tests.refresh", queue_name="tests", max_retries=3,
                time_limit=10_000)
def refresh(integration_id: int, generation: int) -> int:
    """Like an OAuth token refresh: schedules the next refresh under the same unique key."""
    if generation < 2:
        refresh.send_with_options(args=(integration_id, generation + 1), delay=0,
                                  unique_key=f"refresh-{integration_id}")
    return generation


@dramatiq.actor(broker=actors.broker, actor_name="tests.limited", queue_name="tests", max_retries=0,
                concurrency_limit=2, time_limit=10_000)
def limited(seconds: float) -> None:
    with running_lock:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        with running_lock:
            running["now"] -= 1


def _job(job_id) -> jobs.Job:
    return jobs.get(job_id)


def _seconds_until_next_attempt(sql, job_id) -> float:
    [(seconds,)] = sql("SELECT extract(epoch FROM available_at - lamplighter.now()) FROM dramatiq.queue "
                       "WHERE message_id = %s", (str(job_id),))
    return float(seconds)


def _make_due(sql, job_id) -> None:
    sql("UPDATE dramatiq.queue SET available_at = lamplighter.now() WHERE message_id = %s", (str(job_id),))


# ---- retry policies and outcomes ------------------------------------------------------------

def test_explicit_schedule_sets_each_next_attempt_time_in_the_table(broker, run_worker, sql):
    run_worker()
    key = f"schedule-{uuid.uuid4()}"
    message = scheduled.send(key)
    for n, expected in enumerate([60, 300, 900, 3600, 14400], start=1):
        wait_for(lambda: _job(message.message_id).attempt == n and _job(message.message_id).state == "queued"
                 and len(_job(message.message_id).attempts) == n, message=f"attempt {n} failed and rescheduled")
        assert expected - 5 < _seconds_until_next_attempt(sql, message.message_id) <= expected
        _make_due(sql, message.message_id)
    wait_for(lambda: _job(message.message_id).state == "dead", message="dead after the 6th attempt")
    job = _job(message.message_id)
    assert (job.attempt, job.max_attempts) == (6, 6)
    assert [a.outcome for a in job.attempts] == ["failed"] * 5 + ["dead"]
    assert attempts[key] == 6


def test_exponential_backoff_is_capped_and_jittered(broker, run_worker, sql):
    run_worker()
    message = backoff.send(f"backoff-{uuid.uuid4()}")
    wait_for(lambda: _job(message.message_id).state == "queued" and _job(message.message_id).attempt == 1,
             message="first failure")
    # min_backoff is huge; the cap (60 s) wins, and jitter takes it down to between half and all of it.
    assert 29 < _seconds_until_next_attempt(sql, message.message_id) <= 60


def test_permanent_failure_and_throws_go_dead_without_retry(broker, run_worker):
    run_worker()
    permanent = outcome.send("permanent", key=str(uuid.uuid4()))
    declared = outcome.send("throws", key=str(uuid.uuid4()))
    for message, error in ((permanent, "PermanentFailure"), (declared, "NotWorthRetrying")):
        wait_for(lambda: _job(message.message_id).state == "dead", message=f"{error} is dead")
        job = _job(message.message_id)
        assert job.attempt == 1 and [a.outcome for a in job.attempts] == ["dead"]
        assert job.attempts[0].error_type == error
        assert job.last_error.startswith(error + ": ")


def test_retry_later_honours_its_delay(broker, run_worker, sql):
    run_worker()
    message = outcome.send("retry_later", key=str(uuid.uuid4()), delay=120)
    wait_for(lambda: _job(message.message_id).attempt == 1 and _job(message.message_id).state == "queued",
             message="retry later")
    assert 115 < _seconds_until_next_attempt(sql, message.message_id) <= 120
    assert _job(message.message_id).attempts[0].error_type == "RetryLater"
    _make_due(sql, message.message_id)
    wait_for(lambda: _job(message.message_id).state == "completed", message="second attempt completes")


def test_cancel_outcome_ends_the_job_cancelled(broker, run_worker):
    run_worker()
    message = outcome.send("cancel", key=str(uuid.uuid4()))
    wait_for(lambda: _job(message.message_id).state == "cancelled", message="cancelled by the job itself")
    assert [a.outcome for a in _job(message.message_id).attempts] == ["cancelled"]


def test_outbound_http_maps_status_codes_to_outcomes(broker, run_worker, sql, httpserver_ipv4, monkeypatch):
    httpserver = httpserver_ipv4
    # The SSRF guard refuses loopback unless the allow-list names it (actors/outbound_guard.py).
    monkeypatch.setattr(settings_module, "_current", settings_module._current)  # restored afterwards
    settings_module.configure(dataclasses.replace(settings_module.get(), outbound_allow=("127.0.0.1",)))
    httpserver.expect_request("/limited").respond_with_data("slow down", status=429, headers={"Retry-After": "42"})
    httpserver.expect_request("/gone").respond_with_data("no such thing", status=404)
    httpserver.expect_request("/broken").respond_with_data("oops", status=502)
    run_worker()
    limited_call = fetch.send(httpserver.url_for("/limited"))
    gone = fetch.send(httpserver.url_for("/gone"))
    broken = fetch.send(httpserver.url_for("/broken"))
    wait_for(lambda: _job(limited_call.message_id).attempt == 1 and _job(limited_call.message_id).state == "queued",
             message="429 retried")
    # Retry-After, not the schedule; spread by up to a tenth later, never sooner.
    assert 37 < _seconds_until_next_attempt(sql, limited_call.message_id) <= 42 * 1.1
    wait_for(lambda: _job(gone.message_id).state == "dead", message="404 is permanent")
    assert _job(gone.message_id).attempts[0].error_type == "PermanentFailure"
    wait_for(lambda: _job(broken.message_id).attempt == 1 and _job(broken.message_id).state == "queued",
             message="502 retried")
    assert 890 < _seconds_until_next_attempt(sql, broken.message_id) <= 900  # the actor's schedule


def test_outbound_timeout_is_never_unbounded():
    from actors.outbound import Outbound

    http = Outbound(connect_timeout=2, read_timeout=5)
    assert http.timeout() == (2, 5)
    assert http.timeout(None) == (2, 5)
    assert http.timeout(60) == (2, 5)
    assert http.timeout((1, 3)) == (1, 3)


def test_retry_after_parsing():
    from datetime import datetime, timezone

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now=now) == 60
    assert parse_retry_after("garbage", default=5) == 5
    assert parse_retry_after("999999999", cap=3600) == 3600


def test_time_limit_fails_the_attempt_and_it_is_retried_per_policy(broker, run_worker):
    # dramatiq's CLI starts TimeLimit's watchdog on process boot; an in-process Worker has none.
    from dramatiq.middleware import TimeLimit

    [time_limit] = [m for m in broker.middleware if isinstance(m, TimeLimit)]
    if not time_limit.manager.is_alive():
        time_limit.manager.start()
    run_worker()
    message = slow_steps.send(30)
    wait_for(lambda: _job(message.message_id).state == "dead", timeout=30, message="out of time twice")
    job = _job(message.message_id)
    assert [a.outcome for a in job.attempts] == ["failed", "dead"]
    assert {a.error_type for a in job.attempts} == {"TimeLimitExceeded"}


def test_a_job_older_than_its_max_age_goes_dead_without_running(broker, run_worker):
    old = aged.message().copy(message_timestamp=int(time.time() * 1000) - 60_000)
    broker.enqueue(old)
    fresh = aged.send()
    run_worker()
    wait_for(lambda: _job(fresh.message_id).state == "completed", message="fresh job runs")
    wait_for(lambda: _job(old.message_id).state == "dead", message="old job dead")
    job = _job(old.message_id)
    assert job.attempt == 0 and job.attempts == ()
    assert job.last_error.startswith("MaxAgeExceeded")


# ---- dead jobs and redrive ------------------------------------------------------------------

def test_cli_retry_redrives_with_edited_args_and_records_it(broker, run_worker, capsys):
    run_worker()
    message = outcome.send("permanent", key=str(uuid.uuid4()))
    wait_for(lambda: _job(message.message_id).state == "dead", message="dead")
    key = str(uuid.uuid4())
    assert cli.main(["retry", message.message_id, "--args", json.dumps({"kind": "fine", "key": key})]) == 0
    wait_for(lambda: _job(message.message_id).state == "completed", message="redriven with new args completes")
    job = _job(message.message_id)
    assert job.kwargs == {"kind": "fine", "key": key}
    assert [a.outcome for a in job.attempts] == ["dead", "completed"]
    [event] = [e for e in job.events if e.event == "redriven"]
    assert event.requested_by.startswith("cli:")
    assert event.detail["edited_args"] is True
    assert event.detail["previous"]["args"] == ["permanent"]


def test_bulk_redrive_by_actor_queue_and_error_type(broker, run_worker, sql):
    run_worker()
    permanent = [outcome.send("permanent", key=str(uuid.uuid4())) for _ in range(3)]
    other = outcome.send("throws", key=str(uuid.uuid4()))
    for m in permanent + [other]:
        wait_for(lambda: _job(m.message_id).state == "dead", message="dead")
    assert jobs.requeue_matching(actor="tests.ping-nobody", by="test") == []
    redriven = jobs.requeue_matching(actor="tests.outcome", queue="tests", error_type="PermanentFailure", by="test")
    assert sorted(map(str, redriven)) == sorted(m.message_id for m in permanent)
    assert _job(other.message_id).state == "dead"
    wait_for(lambda: all(_job(m.message_id).attempt == 2 for m in permanent), message="ran again")
    assert all(any(e.event == "redriven" and e.detail["bulk"]["error_type"] == "PermanentFailure"
                   for e in _job(m.message_id).events) for m in permanent)


def test_cli_bulk_redrive(broker, run_worker, capsys):
    run_worker()
    message = outcome.send("throws", key=str(uuid.uuid4()))
    wait_for(lambda: _job(message.message_id).state == "dead", message="dead")
    assert cli.main(["retry", "--dead", "--actor", "tests.outcome", "--error-type", "NotWorthRetrying"]) == 0
    assert "1 dead job(s) queued again" in capsys.readouterr().out
    wait_for(lambda: _job(message.message_id).attempt == 2, message="ran again")
    assert cli.main(["retry"]) == 2  # neither an id nor --dead


# ---- unique jobs ----------------------------------------------------------------------------

def _send_unique(key, *args, **options):
    return outcome.send_with_options(args=args, unique_key=key, **options)


def test_unique_key_ignore_returns_the_existing_job(broker, sql):
    first = _send_unique("k-ignore", "fine", delay=60_000)
    second = _send_unique("k-ignore", "fine", "other")
    assert second.message_id == first.message_id
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key = 'k-ignore'") == [(1,)]
    assert any(e.event == "unique_conflict" for e in _job(first.message_id).events)


def test_unique_key_replace_takes_the_new_arguments_and_time(broker, sql):
    first = _send_unique("k-replace", "fine", "a", delay=3_600_000)
    second = _send_unique("k-replace", "fine", "b", delay=60_000, unique_on_conflict="replace")
    assert second.message_id == first.message_id
    job = _job(first.message_id)
    assert job.args == ["fine", "b"] and job.message["message_id"] == first.message_id
    assert 55 < _seconds_until_next_attempt(sql, first.message_id) <= 60


def test_unique_key_reschedule_earlier_and_later(broker, sql):
    first = _send_unique("k-early", "fine", delay=3_600_000)
    _send_unique("k-early", "fine", delay=60_000, unique_on_conflict="reschedule_earlier")
    assert 55 < _seconds_until_next_attempt(sql, first.message_id) <= 60
    _send_unique("k-early", "fine", delay=7_200_000, unique_on_conflict="reschedule_earlier")
    assert _seconds_until_next_attempt(sql, first.message_id) <= 60
    late = _send_unique("k-late", "fine", delay=60_000)
    _send_unique("k-late", "fine", delay=7_200_000, unique_on_conflict="reschedule_later")
    assert 7_100 < _seconds_until_next_attempt(sql, late.message_id) <= 7_200
    _send_unique("k-late", "fine", delay=0, unique_on_conflict="reschedule_later")
    assert _seconds_until_next_attempt(sql, late.message_id) > 7_100


def test_unique_key_is_free_again_after_completion_unless_completed_is_a_held_state(broker, run_worker):
    run_worker()
    once = _send_unique("k-done", "fine", str(uuid.uuid4()))
    wait_for(lambda: _job(once.message_id).state == "completed", message="completed")
    again = _send_unique("k-done", "fine", str(uuid.uuid4()))
    assert again.message_id != once.message_id  # completed does not hold the key by default
    wait_for(lambda: _job(again.message_id).state == "completed", message="completed")
    sticky = _send_unique("k-sticky", "fine", str(uuid.uuid4()), unique_states=["completed"])
    wait_for(lambda: _job(sticky.message_id).state == "completed", message="completed")
    assert _send_unique("k-sticky", "fine", unique_states=["completed"]).message_id == sticky.message_id


def test_concurrent_enqueues_with_one_key_create_one_job(broker, database_url, sql):
    barrier = threading.Barrier(8)
    ids, errors = [], []

    def enqueue():
        try:
            barrier.wait()
            ids.append(_send_unique("k-race", "fine", delay=60_000).message_id)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key = 'k-race'") == [(1,)]


def test_a_running_job_can_enqueue_its_own_successor_under_its_key(broker, run_worker, sql):
    run_worker()
    first = refresh.send_with_options(args=(7, 0), unique_key="refresh-7")
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key = 'refresh-7' "
                         "AND state = 'completed'") == [(3,)], message="three generations ran")
    generations = sql("SELECT message->'args'->>1 FROM dramatiq.queue WHERE unique_key = 'refresh-7' ORDER BY enqueued_at")
    assert generations == [("0",), ("1",), ("2",)]
    assert _job(first.message_id).state == "completed"


def test_unique_redrive_conflict_is_reported(broker, sql):
    dead = _send_unique("k-redrive", "fine", delay=60_000)
    sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = lamplighter.now() WHERE message_id = %s",
        (dead.message_id,))
    holder = _send_unique("k-redrive", "fine", delay=60_000)
    assert holder.message_id != dead.message_id
    with pytest.raises(jobs.JobStateConflict, match="unique key"):
        jobs.requeue(dead.message_id, by="test")
    assert jobs.requeue_matching(actor="tests.outcome", by="test") == []


def test_unique_enqueue_joins_the_callers_transaction(broker, sql):
    db = connection.database
    with db.atomic() as txn:
        _send_unique("k-txn", "fine")
        txn.rollback()
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key = 'k-txn'") == [(0,)]


# ---- SQL enqueue ----------------------------------------------------------------------------

def test_sql_enqueue_function_makes_a_message_a_worker_runs(broker, run_worker, sql):
    run_worker()  # registers the actors
    wait_for(lambda: sql("SELECT count(*) FROM lamplighter.actors WHERE name = 'maintenance.ping'") == [(1,)],
             message="actors registered")
    [(keyword,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '{\"note\": \"from psql\"}')")
    [(positional,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '[\"positional\"]', priority => 5)")
    [(later,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '[]', delay => '1 hour')")
    wait_for(lambda: _job(keyword).state == "completed" and _job(positional).state == "completed",
             message="SQL-enqueued jobs ran")
    assert _job(keyword).attempts[0].result_summary["note"] == "from psql"
    assert _job(positional).attempts[0].result_summary["note"] == "positional"
    job = _job(positional)
    assert (job.queue_name, job.priority, job.max_attempts) == ("maintenance", 5, 4)
    assert job.enqueued_by.startswith("sql:")
    assert set(job.message) == set(actors.maintenance.ping.message().asdict())
    assert _job(later).state == "queued" and _seconds_until_next_attempt(sql, later) > 3500


def test_sql_enqueue_rejects_unknown_actors_and_bad_args(broker, sql):
    sql("INSERT INTO lamplighter.actors (name, queue_name) VALUES ('maintenance.ping', 'maintenance')")
    with pytest.raises(psycopg2.errors.InvalidParameterValue, match="unknown actor"):
        sql("SELECT lamplighter.enqueue('no.such.actor', '[]')")
    with pytest.raises(psycopg2.errors.InvalidParameterValue, match="JSON array"):
        sql("SELECT lamplighter.enqueue('maintenance.ping', '\"just a string\"')")
    [(a,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '[]', unique_key => 'sql-once')")
    [(b,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '[]', unique_key => 'sql-once')")
    assert a == b


# ---- cancellation ---------------------------------------------------------------------------

def test_cancel_running_job_sets_a_flag_the_actor_honours(broker, run_worker, sql):
    run_worker()
    message = app.until_cancelled.send(30)
    wait_for(lambda: _job(message.message_id).started_at is not None, message="running")
    assert jobs.cancel(message.message_id, by="test-operator") == "cancel requested"
    wait_for(lambda: _job(message.message_id).state == "cancelled", message="actor stopped")
    job = _job(message.message_id)
    assert [a.outcome for a in job.attempts] == ["cancelled"]
    assert [e.event for e in job.events] == ["cancel_requested"]
    assert job.events[0].requested_by == "test-operator"


def test_cancel_waiting_job_is_recorded(broker):
    message = outcome.send_with_options(args=("fine",), delay=60_000)
    assert jobs.cancel(message.message_id, by="test-operator") == "cancelled"
    job = _job(message.message_id)
    assert job.state == "cancelled" and [e.event for e in job.events] == ["cancelled"]


# ---- concurrency limits ---------------------------------------------------------------------

def test_concurrency_limit_is_exact_under_racing_claimers(broker, sql):
    """Eight claimers (as eight workers) race over 200 jobs sharing a key with limit 2: exactly
    two are ever running, whatever the interleaving."""
    msgs = [limited.message_with_options(args=(0,), concurrency_key="endpoint-7") for _ in range(200)]
    broker.enqueue_many(msgs)
    barrier = threading.Barrier(8)
    errors = []

    def claimer():
        conn = connection.raw_connection("test-claimer")
        worker_id = str(uuid.uuid4())
        try:
            with conn:
                conn.cursor().execute("INSERT INTO lamplighter.workers (id, hostname, pid, queues, version) "
                                      "VALUES (%s, 'tests', 1, '{}', 'tests')", (worker_id,))
            barrier.wait()
            for _ in range(20):
                with conn:
                    conn.cursor().execute(jobs.SQL["job_claim_batch"],
                                          {"queue": "tests", "limit": 50, "worker_id": worker_id, "token": 1})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'running'") == [(2,)]
    assert sql("SELECT count(*) FROM lamplighter.concurrency_slots WHERE key = 'endpoint-7' "
               "AND holder IS NOT NULL") == [(2,)]


def test_concurrency_limit_per_actor_in_a_worker(broker, run_worker):
    running.update(now=0, peak=0)
    run_worker(threads=8)
    sent = broker.enqueue_many([limited.message(0.15) for _ in range(10)])
    wait_for(lambda: all(_job(m.message_id).state == "completed" for m in sent), message="all ran")
    assert running["peak"] == 2
    assert {_job(m.message_id).concurrency_key for m in sent} == {"tests.limited"}


def test_a_woken_idle_worker_leaves_keyed_jobs_to_the_full_claim(broker, run_worker, monkeypatch):
    """An idle worker woken for a job claims it by the short claim (storage/sql/jobs.sql,
    job_claim_woken), which never takes a keyed job: single sends of a limited actor, each a
    wake-up, still run two at a time, none through the short claim."""
    from storage.engine import consumer as consumer_module

    held = []  # jobs the short claim took
    original = consumer_module.query_module.execute

    def noting(cursor, concern, name, *args, **kwargs):
        result = original(cursor, concern, name, *args, **kwargs)
        if name == "job_claim_woken" and cursor.rowcount > 0:
            held.append(name)
        return result

    monkeypatch.setattr(consumer_module.query_module, "execute", noting)
    running.update(now=0, peak=0)
    run_worker(threads=8, queues=["tests"])
    wait_for(lambda: getattr(broker.consumers.get("tests"), "listening", False), message="worker idle")
    sent = [limited.send(0.1) for _ in range(6)]
    wait_for(lambda: all(_job(m.message_id).state == "completed" for m in sent), message="all ran")
    assert running["peak"] == 2
    assert held == []
    # An unkeyed job on the same, now idle, queue does go through the short claim.
    wait_for(lambda: not broker.consumers["tests"].mine, message="worker idle again")
    other = outcome.send("fine")
    wait_for(lambda: _job(other.message_id).state == "completed", message="unkeyed job ran")
    assert held == ["job_claim_woken"]


def test_stray_slots_are_freed(broker, sql):
    message = limited.send_with_options(args=(0,), concurrency_key="stray")
    sql("UPDATE lamplighter.concurrency_slots SET holder = %s, generation = generation + 1 "
        "WHERE key = 'stray' AND slot = 1",
        (message.message_id,))
    conn = connection.raw_connection()
    with conn:
        assert jobs.free_stray_slots(conn) == 1
    assert sql("SELECT count(*) FROM lamplighter.concurrency_slots WHERE holder IS NOT NULL") == [(0,)]


# ---- unknown actors and bad rows ------------------------------------------------------------

def test_unknown_actor_waits_out_the_grace_then_goes_dead(broker, run_worker, sql):
    broker.settings = dataclasses.replace(broker.settings, unknown_actor_grace=3600)
    job_id = str(uuid.uuid4())
    message = {"queue_name": "tests", "actor_name": "newer.release.actor", "args": [], "kwargs": {},
               "options": {}, "message_id": job_id, "message_timestamp": int(time.time() * 1000)}
    sql("INSERT INTO dramatiq.queue (message_id, queue_name, state, message) VALUES (%s, 'tests', 'queued', %s)",
        (job_id, json.dumps(message)))
    run_worker()
    wait_for(lambda: "waiting for a worker that knows it" in (_job(job_id).last_error or ""),
             message="left for another worker")
    job = _job(job_id)
    assert job.state == "queued" and job.attempt == 0
    assert _seconds_until_next_attempt(sql, job_id) > 5
    sql("UPDATE dramatiq.queue SET enqueued_at = lamplighter.now() - interval '2 hours', "
        "available_at = lamplighter.now() WHERE message_id = %s", (job_id,))
    wait_for(lambda: _job(job_id).state == "dead", message="dead after the grace")
    assert "no worker of this deployment has known it" in _job(job_id).last_error


@pytest.mark.parametrize("message, reason", [
    ('{"actor_name": "maintenance.ping", "args": [], "kwargs": {}, "options": {}}', "'message_id' is missing"),
    ('{"actor_name": "maintenance.ping", "message_id": "x", "args": [], "kwargs": {"nope": 1}, "options": {}}',
     "does not match"),
    ('{"actor_name": 7, "args": [], "kwargs": {}, "options": {}}', "'actor_name' must be a str"),
    ('{"actor_name": "maintenance.ping", "message_id": "ID", "args": [], "kwargs": {"wrong": 1}, "options": {}}',
     "arguments do not fit maintenance.ping"),
    ('{"actor_name": "maintenance.ping", "message_id": "ID", "args": [], "kwargs": {"note": "BIG"}, "options": {}}',
     "payload too large"),
])
def test_more_bad_rows_go_dead_with_a_reason(broker, run_worker, sql, message, reason):
    bad_id = str(uuid.uuid4())
    message = message.replace('"ID"', json.dumps(bad_id)).replace("BIG", "x" * 300_000)
    sql("INSERT INTO dramatiq.queue (message_id, queue_name, state, message) VALUES (%s, 'maintenance', 'queued', %s)",
        (bad_id, message))
    run_worker()
    good = actors.maintenance.ping.send(note="after")
    wait_for(lambda: _job(good.message_id).state == "completed", message="queue keeps moving")
    wait_for(lambda: _job(bad_id).state == "dead", message="bad row dead")
    job = _job(bad_id)
    assert reason in job.last_error and job.attempt == 0


# ---- pruning --------------------------------------------------------------------------------

def test_prune_deletes_old_finished_jobs_in_batches_and_keeps_dead_longer(broker, sql):
    broker_settings = dataclasses.replace(broker.settings, completed_retention=3600, dead_retention=86400,
                                          prune_batch_size=7)
    from storage import settings as settings_module

    settings_module.configure(broker_settings)
    sent = broker.enqueue_many([outcome.message("fine") for _ in range(30)])
    ids = [m.message_id for m in sent]
    sql("UPDATE dramatiq.queue SET state = 'completed', finished_at = lamplighter.now() - interval '2 hours' "
        "WHERE message_id = ANY(%s::uuid[])", (ids[:20],))
    sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = lamplighter.now() - interval '2 hours' "
        "WHERE message_id = ANY(%s::uuid[])", (ids[20:25],))
    sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = lamplighter.now() - interval '2 days' "
        "WHERE message_id = ANY(%s::uuid[])", (ids[25:27],))
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, outcome) "
        "SELECT message_id, 1, actor_name, queue_name, finished_at, 'completed' FROM dramatiq.queue "
        "WHERE state = 'completed'")
    report = actors.jobs.prune_jobs.fn()
    assert report["completed"] == {"jobs": 20, "history_rows": 20, "batches": 3}
    assert report["dead"]["jobs"] == 2
    assert sql("SELECT state, count(*) FROM dramatiq.queue GROUP BY state ORDER BY state") == [
        ("dead", 5), ("queued", 3)]
    assert sql("SELECT count(*) FROM lamplighter.job_history") == [(0,)]
    assert actors.jobs.prune_jobs.fn()["completed"]["jobs"] == 0  # safe to re-run


def test_concurrency_limit_holds_across_worker_processes(broker, database_url, sql, tmp_path):
    """Two worker processes, four threads each, 12 jobs of an actor limited to 2 at once: the
    recorded run intervals never overlap more than two deep."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, lamplighter_env

    sql("CREATE TABLE public.tests_overlap (tag text, started timestamptz, ended timestamptz)")
    procs = []
    try:
        for n in range(2):
            log = open(tmp_path / f"worker-{n}.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "tests.worker_app", "--processes", "1", "--threads", "4",
                 "--queues", "tests-slow", "--skip-logging"],
                cwd=ROOT, env=lamplighter_env(DATABASE_URL=database_url), stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: sql("SELECT count(*) FROM lamplighter.workers") == [(2,)], timeout=30,
                 message="both workers registered")
        broker.enqueue_many([app.overlap.message(f"job-{i}", 0.3) for i in range(12)])
        wait_for(lambda: sql("SELECT count(*) FROM public.tests_overlap") == [(12,)], timeout=60,
                 message="all twelve ran")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=30) == 0
    [(deepest,)] = sql("""
        SELECT max(depth) FROM (
            SELECT (SELECT count(*) FROM public.tests_overlap o
                    WHERE o.started <= t.started AND o.ended > t.started) AS depth
            FROM public.tests_overlap t) AS d""")
    assert deepest == 2
