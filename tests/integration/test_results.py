"""dramatiq's results, group callbacks and declarative rate limits through the real worker path:
results and group count-downs are written by the job's finish statement."""
from __future__ import annotations

import io
import json
import uuid

import dramatiq
import pytest
from dramatiq.results import ResultFailure, ResultTimeout

import actors
from storage.rate_limits import RateLimit
from tests.conftest import wait_for


@dramatiq.actor(broker=actors.broker, actor_name="tests.results_add", queue_name="tests-results", max_retries=0,
                store_results=True, result_ttl=60_000)
def add(x: int, y: int) -> dict:
    return {"sum": x + y}


@dramatiq.actor(broker=actors.broker, actor_name="tests.results_add_quietly", queue_name="tests-results", max_retries=0)
def add_quietly(x: int, y: int) -> dict:
    return {"sum": x + y}


@dramatiq.actor(broker=actors.broker, actor_name="tests.results_refuse", queue_name="tests-results", max_retries=0,
                store_results=True)
def refuse(reason: str) -> None:
    raise ValueError(reason)


@dramatiq.actor(broker=actors.broker, actor_name="tests.results_note", queue_name="tests-results", max_retries=0)
def note(table: str, tag: str) -> None:
    from storage import connection

    conn = connection.raw_connection("tests.results_note")
    try:
        with conn:
            conn.cursor().execute(f"INSERT INTO public.{table} VALUES (%s, clock_timestamp())", (tag,))
    finally:
        conn.close()


@dramatiq.actor(broker=actors.broker, actor_name="tests.window_limited_in_process", queue_name="tests-results",
                max_retries=0,
                rate_limit=RateLimit(key="provider:{provider}", limit=3, window=0.5))
def limited(provider: str, n: int) -> None:
    pass


def test_get_result_without_block_and_before_the_finish(broker, sql):
    from dramatiq.results import ResultMissing

    message = add.send(1, 1)
    with pytest.raises(ResultMissing):
        message.get_result()
    with pytest.raises(ResultTimeout):
        message.get_result(block=True, timeout=200)


def test_results_come_with_the_finish_dead_jobs_raise_and_others_keep_none(broker, run_worker, sql):
    kept, dead, quiet = add.send(2, 3), refuse.send("no such account"), add_quietly.send(2, 2)
    run_worker(threads=2, queues=["tests-results"])
    # get_result(block=True) returns the value once the finish is committed.
    assert kept.get_result(block=True, timeout=20_000) == {"sum": 5}
    [(job_id, expires_in)] = sql("SELECT job_id::text, extract(epoch FROM expires_at - now()) "
                                 "FROM lamplighter.job_results WHERE job_id = %s", (kept.message_id,))
    assert 30 < expires_in <= 60  # result_ttl=60 s, by the database clock
    # A dead job raises dramatiq's ResultFailure with its error.
    with pytest.raises(ResultFailure) as failure:
        dead.get_result(block=True, timeout=20_000)
    assert (failure.value.orig_exc_type, failure.value.orig_exc_msg) == ("ValueError", "no such account")
    # Without store_results: no result row, the history's summary as before.
    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s",
                         (quiet.message_id,)) == [("completed",)], message="job completed")
    assert sql("SELECT count(*) FROM lamplighter.job_results WHERE job_id = %s", (quiet.message_id,)) == [(0,)]
    assert sql("SELECT job_id::text, result_summary FROM lamplighter.job_history WHERE job_id IN (%s, %s) "
               "ORDER BY result_summary::text", (kept.message_id, quiet.message_id)) == [
        (quiet.message_id, {"sum": 4}), (kept.message_id, {"sum": 5})]


def test_a_group_runs_its_completion_callback_once_after_every_member(broker, run_worker, sql):
    sql("CREATE TABLE public.tests_notes (tag text, at timestamptz)")
    members = [note.message("tests_notes", f"member-{i}") for i in range(12)]
    group = dramatiq.group(members, broker=broker)
    group.add_completion_callback(note.message("tests_notes", "callback"))
    group.run()
    run_worker(threads=4, queues=["tests-results"])
    wait_for(lambda: sql("SELECT count(*) FROM public.tests_notes WHERE tag = 'callback'") == [(1,)],
             message="the callback ran")
    [(last_member,)] = sql("SELECT max(at) FROM public.tests_notes WHERE tag LIKE 'member-%%'")
    [(callback_at,)] = sql("SELECT at FROM public.tests_notes WHERE tag = 'callback'")
    assert callback_at > last_member
    assert sql("SELECT count(*) FROM lamplighter.group_members") == [(12,)]
    assert sql("SELECT value FROM lamplighter.rate_limits WHERE key = (SELECT min(group_id) "
               "FROM lamplighter.group_members)") == [(0,)]


def test_a_member_recorded_twice_counts_once(broker, sql):
    """A redriven member (or any second insert of the same member) cannot fire the callbacks early."""
    from storage import rate_limits

    group_id = str(uuid.uuid4())
    backend = rate_limits.PostgresBackend()
    backend.add(group_id, 2, 60_000)
    backend.close()
    member = str(uuid.uuid4())
    callback = [{"message_id": str(uuid.uuid4()), "queue_name": "tests-results", "actor_name": "tests.results_note",
                 "message": {}, "priority": 0}]
    for _ in range(2):
        sql("INSERT INTO lamplighter.group_members (group_id, job_id, callbacks) VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT DO NOTHING", (group_id, member, json.dumps(callback)))
    assert sql("SELECT value FROM lamplighter.rate_limits WHERE key = %s", (group_id,)) == [(1,)]
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE actor_name = 'tests.results_note'") == [(0,)]


def test_a_job_over_its_rate_limit_waits_in_the_queue_without_using_an_attempt(broker, run_worker, sql):
    from storage import logs

    messages = [limited.send("acme", n) for n in range(7)] + [limited.send("other", 0)]
    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    try:
        run_worker(threads=4, queues=["tests-results"])
        ids = [m.message_id for m in messages]
        wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
                             "AND state = 'completed'", (ids,)) == [(8,)], message="all ran")
    finally:
        logs.configure(log_format="json", level="INFO")
    # Waiting for the limit is an INFO line of its own, not dramatiq's "skipped" warning.
    assert '"job_rate_limited"' in stream.getvalue() and "was skipped" not in stream.getvalue()
    assert sql("SELECT max(attempt) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[])", (ids,)) == [(1,)]
    starts = sorted(row[0] for row in sql(
        "SELECT extract(epoch FROM h.started_at) FROM lamplighter.job_history h JOIN dramatiq.queue q "
        "ON q.message_id = h.job_id WHERE q.message_id = ANY(%s::uuid[]) AND q.message->'args'->>0 = 'acme'",
        (ids,)))
    assert len(starts) == 7
    # At most 3 starts in any half second.
    assert all(float(starts[i + 3] - starts[i]) >= 0.5 for i in range(len(starts) - 3)), starts


def test_a_bad_rate_limit_is_refused_at_declaration():
    from storage.rate_limits import RateLimitError

    with pytest.raises(RateLimitError):
        dramatiq.actor(broker=actors.broker, actor_name="tests.results_bad_limit", queue_name="tests-results",
                       rate_limit=RateLimit(limit=0))(lambda: None)


@dramatiq.actor(broker=actors.broker, actor_name="tests.results_odd", queue_name="tests-results", max_retries=0,
                store_results=True)
def odd_result(kind: str):
    return {"nul": "a\x00b", "nan": float("nan"), "object": object(), "huge": "x" * 300_000, "none": None}[kind]


def test_a_result_jsonb_cannot_hold_is_a_result_failure_not_a_refused_batch(broker, run_worker, sql):
    messages = {kind: odd_result.send(kind) for kind in ("nul", "nan", "object", "huge")}
    nothing = odd_result.send("none")
    run_worker(threads=2, queues=["tests-results"])
    assert nothing.get_result(block=True, timeout=20_000) is None  # an actor that returned None
    for kind, message in messages.items():
        with pytest.raises(ResultFailure) as failure:
            message.get_result(block=True, timeout=20_000)
        assert failure.value.orig_exc_type == ("ValueError" if kind in ("nul", "huge") else "TypeError"), kind
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'completed'") == [(5,)]
