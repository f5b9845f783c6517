"""Broker engine properties that stock dramatiq-pg lacks: no lock growth with the backlog,
reconnection after PostgreSQL drops every connection, nothing lost."""
import actors
from tests.conftest import wait_for


def _count(sql, state):
    return sql("SELECT count(*) FROM dramatiq.queue WHERE state = %s", (state,))[0][0]


def test_no_advisory_locks_and_bounded_claims_with_a_50k_backlog(broker, run_worker, sql):
    messages = [actors.maintenance.ping.message(note=str(i)) for i in range(50_000)]
    for start in range(0, len(messages), 10_000):
        broker.enqueue_many(messages[start:start + 10_000])
    run_worker(threads=4)
    samples = []

    def some_done():
        samples.append(sql("SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                           "(SELECT oid FROM pg_database WHERE datname = current_database())), "
                           "(SELECT count(*) FROM dramatiq.queue WHERE state = 'running')")[0]
                       + (len(broker.inflight),))
        return _count(sql, "completed") >= 3_000

    wait_for(some_done, timeout=120, interval=0.1, message="3,000 of 50,000 completed")
    assert max(locks for locks, _, _ in samples) == 0
    # A worker holds only what it is about to run: the messages in its memory stay within one
    # consumer's window (a claim batch), not the backlog.
    assert max(held for _, _, held in samples) <= max(broker.settings.claim_batch, 4 * 2)
    # Rows marked running also include finishes waiting for their grouped commit: still a few
    # hundred at most, not a share of the 50,000.
    assert max(running for _, running, _ in samples) < 1_000


def test_workers_reconnect_after_every_backend_is_terminated(broker, run_worker, sql):
    run_worker(threads=4)
    first = [actors.maintenance.ping.send(note=f"before {i}") for i in range(50)]
    wait_for(lambda: _count(sql, "completed") == 50, message="first 50 done")
    killed = sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")[0][0]
    assert killed >= 3  # claim, listen, finisher, heartbeat connections at least
    # The sender's own connection was terminated too: storage reconnects on next use.
    from storage import connection

    connection.reset()
    second = [actors.maintenance.ping.send(note=f"after {i}") for i in range(200)]
    wait_for(lambda: _count(sql, "completed") == 250, timeout=60, message="all 250 done after the outage")
    assert sql("SELECT count(*), count(DISTINCT job_id) FROM lamplighter.job_history") == [(250, 250)]
    assert len(first) + len(second) == 250


def test_claim_walks_the_claim_index_on_a_large_table(broker, sql):
    """The per-job claim stays O(batch) with 100k waiting and 100k finished rows."""
    sql("""INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, state, message, priority, available_at)
           SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN 'other' ELSE 'maintenance' END, 'maintenance.ping',
                  CASE WHEN i <= 100000 THEN 'queued' ELSE 'completed' END, '{}'::jsonb, i % 3,
                  lamplighter.now() - make_interval(secs => i)
           FROM generate_series(1, 200000) AS i""")
    sql("ANALYZE dramatiq.queue")
    from storage.broker import SQL

    plan = "\n".join(row[0] for row in sql(
        "EXPLAIN " + SQL["job_claim_batch"].replace("%(queue)s", "'maintenance'").replace("%(limit)s", "50")
        .replace("%(worker_id)s", f"'{broker.worker_id}'")))
    assert "queue_claim_idx" in plan, plan
    assert "Seq Scan on queue" not in plan, plan


def test_jobs_taken_by_a_claim_whose_answer_was_lost_go_back_to_the_queue(broker, sql):
    """A claim's COMMIT reached the server but the connection died before the answer did (a
    crash at the wrong moment): the rows are this worker's, yet it never saw them. The queue's
    next claim hands them back, in the same transaction, and so delivers them after all."""
    ids = [actors.maintenance.ping.send(note=str(i)).message_id for i in range(3)]
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claimed_at = now() "
        "WHERE message_id = ANY(%s::uuid[])", (broker.worker_id, ids[:2]))
    consumer = broker.consume("maintenance", prefetch=4)
    try:
        consumer.claim_unsure = True
        delivered = consumer._claim(10)
        assert sorted(m.message_id for m in delivered) == sorted(ids)
        assert not consumer.claim_unsure
        assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'running' AND attempt = 0 "
                   "AND worker_id = %s", (broker.worker_id,)) == [(3,)]
        # A job this worker knows (running here) is never taken back by the reconciliation.
        consumer.claim_unsure = True
        assert consumer._claim(10) == []
        assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'running'") == [(3,)]
    finally:
        consumer.claim_conn.close()
        consumer.listen_conn.close()
