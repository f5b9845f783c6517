"""Bulk enqueue: hundreds of plain jobs stream in with COPY; re-sends, delays and keyed jobs
take the set-based upsert; either way the same rows, the same wake-up, the caller's transaction."""
import re
import select

import psycopg2

import actors
from storage import connection, jobs
from tests.conftest import wait_for

PING = actors.maintenance.ping
COLUMNS = ("queue_name, actor_name, state, priority, attempt, max_attempts, tenant_id, correlation_id, "
           "enqueued_by, message")


def _rows(sql, ids):
    return sql(f"SELECT message_id::text, {COLUMNS} FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
               "ORDER BY message_id", (list(ids),))


def _messages(count, **options):
    return [PING.message_with_options(kwargs={"note": f"bulk {i}\ttab\nline \\ slash \u00e9"}, **options)
            for i in range(count)]


def _spy_copy(monkeypatch) -> list:
    results = []
    real = jobs._copy_in
    monkeypatch.setattr(jobs, "_copy_in", lambda batch: results.append((len(batch), real(batch))) or results[-1][1])
    return results


def test_copy_and_insert_paths_write_the_same_rows(broker, sql, monkeypatch):
    assert jobs.COPY_THRESHOLD <= 150
    copies = _spy_copy(monkeypatch)
    options = {"tenant_id": "acme\tcorp", "correlation_id": "req\\42"}
    copied = broker.enqueue_many(_messages(150, **options))
    inserted = broker.enqueue_many(_messages(3, **options))  # under the threshold: the INSERT
    assert copies == [(150, True)]
    a, b = _rows(sql, [m.message_id for m in copied]), _rows(sql, [m.message_id for m in inserted])
    assert len(a) == 150 and len(b) == 3
    strip = lambda row: row[1:-1] + (row[-1]["kwargs"],)  # noqa: E731  (ids and message ids differ)
    assert {strip(r)[:-1] for r in a} == {strip(r)[:-1] for r in b}
    assert {r[-1]["kwargs"]["note"] for r in a} == {f"bulk {i}\ttab\nline \\ slash \u00e9" for i in range(150)}
    assert all(r[-1]["message_id"] == r[0] for r in a)
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE available_at > lamplighter.now() "
               "OR enqueued_at > lamplighter.now()") == [(0,)]


def test_a_re_sent_batch_falls_back_to_the_upsert(broker, sql, monkeypatch):
    copies = _spy_copy(monkeypatch)
    messages = _messages(200)
    broker.enqueue_many(messages)
    sql("UPDATE dramatiq.queue SET state = 'dead' WHERE message_id = %s", (messages[0].message_id,))
    broker.enqueue_many(messages)  # every message_id exists: COPY fails, the upsert re-queues
    assert copies == [(200, True), (200, False)]
    assert sql("SELECT state, count(*) FROM dramatiq.queue GROUP BY state") == [("queued", 200)]


def test_copy_joins_the_callers_transaction(broker, sql):
    db = connection.database
    with db.atomic() as txn:
        rolled_back = broker.enqueue_many(_messages(120))
        txn.rollback()
    with db.atomic():
        kept = broker.enqueue_many(_messages(120))
        assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]  # invisible until commit
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(120,)]
    assert not _rows(sql, [m.message_id for m in rolled_back])
    assert len(_rows(sql, [m.message_id for m in kept])) == 120


def test_delayed_bulk_waits_in_the_table(broker, sql):
    broker.enqueue_many(_messages(150), delay=60_000)
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE available_at > lamplighter.now() + interval '50 s'") \
        == [(150,)]


def test_copy_wakes_listening_workers_once_per_queue(broker, database_url):
    listener = psycopg2.connect(database_url)
    listener.autocommit = True
    listener.cursor().execute('LISTEN "dramatiq.maintenance.enqueue"')
    broker.enqueue_many(_messages(300))

    def woken():
        select.select([listener], [], [], 0.2)
        listener.poll()
        return listener.notifies

    wait_for(woken, timeout=10, message="NOTIFY after COPY")
    # One wake-up for the whole batch: a ticket and the job count, never a message.
    [payload] = [n.payload for n in listener.notifies]
    assert re.fullmatch(r"t\d+:300", payload), payload
    listener.close()


def test_bulk_jobs_run(broker, run_worker, sql):
    broker.enqueue_many(_messages(400))
    run_worker(threads=4)
    wait_for(lambda: sql("SELECT count(*) FROM lamplighter.job_history WHERE outcome = 'completed'") == [(400,)],
             timeout=60, message="400 bulk jobs completed")


def test_send_many_writes_what_enqueue_many_writes(broker, sql):
    calls = [{"note": f"fast {i}\ttab\nline \\ slash \u00e9"} for i in range(150)]
    ids = broker.send_many(PING, calls)
    reference = broker.enqueue_many([PING.message_with_options(kwargs=c) for c in calls])
    fast, slow = _rows(sql, ids), _rows(sql, [m.message_id for m in reference])
    assert len(fast) == 150 and len(ids) == len(set(ids)) == 150
    # Same columns, same message but for its id and timestamp.
    strip = lambda row: row[1:-1] + (  # noqa: E731
        {k: v for k, v in row[-1].items() if k not in ("message_id", "message_timestamp")},)
    key = lambda row: row[-1]["kwargs"]["note"]  # noqa: E731
    assert [strip(r) for r in sorted(fast, key=key)] == [strip(r) for r in sorted(slow, key=key)]
    assert all(r[-1]["message_id"] == r[0] for r in fast)
    assert {key(r) for r in fast} == {c["note"] for c in calls}


def test_send_many_takes_positional_calls_and_refuses_non_json(broker, sql):
    import pytest

    from storage.engine import PayloadError

    ids = broker.send_many(PING, [(f"positional {i}",) for i in range(120)])
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE message->'args'->>0 LIKE 'positional %%' "
               "AND message_id = ANY(%s::uuid[])", (ids,)) == [(120,)]
    with pytest.raises(PayloadError, match="arguments must be JSON"):
        broker.send_many(PING, [(i,) for i in range(119)] + [(object(),)])
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(120,)]  # nothing of the refused batch


def test_send_many_below_the_threshold_or_delayed_takes_the_upsert(broker, sql):
    few = broker.send_many(PING, [{"note": "few"}] * 3)
    later = broker.send_many(PING, [{"note": "later"}] * 150, delay=60_000)
    assert len(few) == 3 and len(later) == 150
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE available_at > lamplighter.now() + interval '50 s'") \
        == [(150,)]


def test_send_many_jobs_run(broker, run_worker, sql):
    broker.send_many(PING, [{"note": f"run {i}"} for i in range(300)])
    run_worker(threads=4)
    wait_for(lambda: sql("SELECT count(*) FROM lamplighter.job_history WHERE outcome = 'completed'") == [(300,)],
             timeout=60, message="300 send_many jobs completed")
