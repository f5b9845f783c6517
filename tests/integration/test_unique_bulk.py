"""Bulk enqueue of unique jobs (a sweep's thousands of health checks): the set-based statement
(storage/sql/jobs.sql job_insert_unique_set) gives what one lamplighter.job_insert_unique() call
per job gives: the same jobs created, the same holders returned, the same conflicts on record,
one wake-up per queue, and nothing but the caller's transaction."""
from __future__ import annotations

import json
import select
import threading
import uuid

import dramatiq
import psycopg2

import actors
from storage import connection

checked = dramatiq.actor(lambda n: None, broker=actors.broker, actor_name="tests.unique_bulk",
                         queue_name="tests", max_retries=0)


def _message(key, n=0, **options):
    return checked.message_with_options(args=(n,), unique_key=key, **options)


def _scenario(sql, prefix):
    """Holders as a sweep finds them: k1 waiting, k2 running, k3 completed (free again), k5
    completed but completed holds it; then a batch of k1..k5 with k4 twice. Returns the ids the
    batch got and the ids of the holders set up before it."""
    before = {}
    for key, state in (("k1", "queued"), ("k2", "running"), ("k3", "completed")):
        before[key] = actors.broker.enqueue(_message(f"{prefix}{key}", delay=60_000)).message_id
        if state != "queued":
            sql("UPDATE dramatiq.queue SET state = %s WHERE message_id = %s", (state, before[key]))
    before["k5"] = actors.broker.enqueue(_message(f"{prefix}k5", unique_states=["completed"])).message_id
    sql("UPDATE dramatiq.queue SET state = 'completed' WHERE message_id = %s", (before["k5"],))
    batch = [_message(f"{prefix}{key}", n, **({"unique_states": ["completed"]} if key == "k5" else {}))
             for n, key in enumerate(("k1", "k2", "k3", "k4", "k4", "k5"))]
    return batch, before


def _shape(sql, batch, got, before):
    """The outcome in terms that do not depend on the ids: per job, a new job or which holder;
    and the conflicts recorded, by holder and holder state."""
    sent = [m.message_id for m in batch]
    names = {v: f"before-{k}" for k, v in before.items()} | {v: f"batch-{i}" for i, v in enumerate(sent)}
    outcome = [names.get(g.message_id, "?") for g in got]
    events = sql("SELECT target_id, details ->> 'holder_state', details ->> 'policy' FROM lamplighter.audit_log "
                 "WHERE action = 'job.unique_conflict' AND details ->> 'rejected_message_id' = ANY (%s) ORDER BY 1, 2",
                 (sent,))
    return outcome, sorted((names[holder], state, policy) for holder, state, policy in events)


def test_a_bulk_batch_of_unique_jobs_ends_as_one_call_per_job_would(broker, sql):
    batch, before = _scenario(sql, "bulk-")
    got = broker.enqueue_many(batch)
    bulk = _shape(sql, batch, got, before)

    single_batch, single_before = _scenario(sql, "one-")
    single = [broker.enqueue(m) for m in single_batch]  # one database function call each
    assert bulk == _shape(sql, single_batch, single, single_before)

    outcome, events = bulk
    assert outcome == ["before-k1", "before-k2", "batch-2", "batch-3", "batch-3", "before-k5"]
    assert events == [("batch-3", "queued", "ignore"), ("before-k1", "queued", "ignore"),
                      ("before-k2", "running", "ignore"), ("before-k5", "completed", "ignore")]
    assert sql("SELECT unique_key, count(*) FROM dramatiq.queue WHERE unique_key LIKE 'bulk-%%' "
               "AND state IN ('queued', 'running') GROUP BY 1 ORDER BY 1") == [
        ("bulk-k1", 1), ("bulk-k2", 1), ("bulk-k3", 1), ("bulk-k4", 1)]
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'job.unique_conflict' "
               "AND target_id = %s", (before["k1"],)) == [(1,)]


def test_a_bulk_batch_wakes_each_queue_once_with_its_count(broker, database_url):
    listener = psycopg2.connect(database_url)
    listener.autocommit = True
    listener.cursor().execute('LISTEN "dramatiq.tests.enqueue"')
    broker.enqueue_many([_message(f"wake-{n}", n) for n in range(40)])
    broker.enqueue_many([_message(f"wake-{n}", n) for n in range(40)])  # all held and waiting: woken again
    received = []
    while select.select([listener], [], [], 2) != ([], [], []):
        listener.poll()
        received += [n.payload for n in listener.notifies]
        listener.notifies.clear()
        if len(received) >= 2:
            break
    listener.close()
    assert [payload.split(":")[1] for payload in received] == ["40", "40"]


def test_a_re_sent_message_id_and_other_policies_in_a_bulk_batch_take_the_function(broker, sql):
    done = broker.enqueue(_message("resend-a"))
    sql("UPDATE dramatiq.queue SET state = 'completed' WHERE message_id = %s", (done.message_id,))
    waiting = broker.enqueue(_message("resend-b", 1, delay=3_600_000))
    again = [done, _message("resend-b", 2, delay=0, unique_on_conflict="replace"), _message("resend-c")]

    got = broker.enqueue_many(again)

    assert [g.message_id for g in got] == [done.message_id, waiting.message_id, again[2].message_id]
    assert sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (done.message_id,)) == [("queued",)]
    [(args, due)] = sql("SELECT message -> 'args', available_at <= lamplighter.now() FROM dramatiq.queue "
                        "WHERE message_id = %s", (waiting.message_id,))
    assert (args, due) == ([2], True)  # replaced: the new arguments, due now


def test_a_bulk_batch_joins_the_callers_transaction(broker, sql):
    with connection.database.atomic() as txn:
        broker.enqueue_many([_message(f"txn-{n}") for n in range(5)])
        txn.rollback()
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE unique_key LIKE 'txn-%%'") == [(0,)]
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'job.unique_conflict' "
               "AND details ->> 'rejected_message_id' IS NULL") == [(0,)]


def test_concurrent_bulk_batches_over_the_same_keys_make_one_job_each(broker, database_url, sql):
    keys = [f"race-{n}" for n in range(300)]
    barrier = threading.Barrier(4)
    results, errors = [], []

    def sweep(order):
        try:
            connection.init_database()
            batch = [_message(k, n) for n, k in order]
            barrier.wait()
            got = broker.enqueue_many(batch)
            results.append({k: g.message_id for (_, k), g in zip(order, got)})
        except Exception as exc:  # asserted below
            errors.append(exc)
        finally:
            connection.database.close()

    orders = [list(enumerate(keys)), list(enumerate(keys))[::-1], list(enumerate(keys))[::2], list(enumerate(keys))]
    threads = [threading.Thread(target=sweep, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    held = dict(sql("SELECT unique_key, message_id::text FROM dramatiq.queue WHERE unique_key LIKE 'race-%%'"))
    assert sorted(held) == sorted(keys)  # one job per key, however the batches interleaved
    for seen in results:
        assert all(held[k] == i for k, i in seen.items())  # every caller was told the holder
    [(events,)] = sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'job.unique_conflict' "
                      "AND target_id = ANY (%s)", (list(held.values()),))
    assert events == 300 * 3 + 150 - 300  # every job sent that did not become the holder


def test_the_bulk_conflict_record_names_the_holders_tenant(broker, sql):
    holder = broker.enqueue(_message("tenant-k", tenant_id="acme"))
    broker.enqueue_many([_message("tenant-k", 1), _message("tenant-other", 2)])
    [(tenant, details)] = sql("SELECT tenant_id, details FROM lamplighter.audit_log "
                              "WHERE action = 'job.unique_conflict' AND target_id = %s", (holder.message_id,))
    assert tenant == "acme" and details["holder_state"] == "queued"
    assert json.loads(json.dumps(details))["policy"] == "ignore"
