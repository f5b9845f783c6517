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
    from storage.jobs import SQL

    plan = "\n".join(row[0] for row in sql(
        "EXPLAIN " + SQL["job_claim_batch"].replace("%(queue)s", "'maintenance'").replace("%(limit)s", "50")
        .replace("%(worker_id)s", f"'{broker.worker_id}'").replace("%(token)s", "1")))
    assert "queue_claim_unkeyed_idx" in plan, plan
    assert "Seq Scan on queue" not in plan, plan


def test_jobs_taken_by_a_claim_whose_answer_was_lost_go_back_to_the_queue(broker, sql):
    """A claim's COMMIT reached the server but the connection died before the answer did (a
    crash at the wrong moment): the rows are this worker's, yet it never saw them. The queue's
    next claim hands them back, in the same transaction, and so delivers them after all."""
    ids = [actors.maintenance.ping.send(note=str(i)).message_id for i in range(3)]
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, claim_token = 99, claimed_at = now() "
        "WHERE message_id = ANY(%s::uuid[])", (broker.worker_id, ids[:2]))
    consumer = broker.consume("maintenance", prefetch=4)
    try:
        consumer.lost_tokens = [99]  # as a claim whose connection died leaves it
        delivered, _ = consumer._claim(10)
        assert sorted(m.message_id for m in delivered) == sorted(ids)
        assert not consumer.lost_tokens
        assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'running' AND attempt = 0 "
                   "AND worker_id = %s", (broker.worker_id,)) == [(3,)]
        # Jobs of other claims (running here) are never taken back by it.
        consumer.lost_tokens = [12345]
        assert consumer._claim(10) == ([], False)
        assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'running'") == [(3,)]
    finally:
        consumer.close()


def _idle_fleet(size, queue):
    """``size`` brokers with a consumer each on ``queue``, registered as live workers."""
    from storage.engine import LamplighterBroker
    from storage.engine.presence import Presence

    fleet = []
    for _ in range(size):
        member = LamplighterBroker(settings=actors.broker.settings)
        presence = Presence(member, [queue])
        presence.register()
        fleet.append((member, presence, member.consume(queue, prefetch=8)))
    for _, presence, _ in fleet:  # everyone sees everyone
        presence.refresh_places(presence.conn.get())
    return fleet


def _wait_all(consumers, seconds, announce=True):
    """Each consumer waits for work in its own thread, as an idle worker would; returns how long
    each waited. A woken consumer announces its ticket at once (as it would after its claim)."""
    import threading
    import time

    waited = [None] * len(consumers)

    def wait(i, consumer):
        start = time.monotonic()
        consumer._wait_for_work(seconds)
        waited[i] = time.monotonic() - start
        if announce and consumer.answering:
            consumer._announce(consumer.answering)

    threads = [threading.Thread(target=wait, args=(i, c)) for i, c in enumerate(consumers)]
    for thread in threads:
        thread.start()
    return threads, waited


def _enqueue_one(note):
    import uuid

    from storage import jobs

    jobs.enqueue_many([jobs.NewJob(message_id=str(uuid.uuid4()), queue_name="tests-wake",
                                   actor_name="maintenance.ping", message={"kwargs": {"note": note}})])


def _listening(consumers):
    return all(c.listening for c in consumers)


def _close(fleet):
    from storage import workers

    for member, presence, consumer in fleet:
        consumer.close()
        workers.unregister(presence.conn.get(), worker_id=member.worker_id)
        presence.conn.close()


def test_one_job_wakes_one_idle_consumer_not_the_whole_fleet(broker, monkeypatch):
    from storage import wakeups

    monkeypatch.setattr(wakeups, "STAGGER", 0.3)  # room for the announcement to arrive
    fleet = _idle_fleet(4, "tests-wake")
    consumers = [c for _, _, c in fleet]
    try:
        for round_ in range(3):
            # Stand-ins that missed the announcement would return at 0.3, 0.6 or 0.9 s.
            threads, waited = _wait_all(consumers, 1.5)
            wait_for(lambda: _listening(consumers), message="consumers listening")
            _enqueue_one(f"wake {round_}")  # the real enqueue path's NOTIFY
            for thread in threads:
                thread.join()
            early = [w for w in waited if w < 1.2]
            assert len(early) == 1, f"round {round_}: waits {waited}"  # one answered, three slept on
    finally:
        _close(fleet)


def _heard(listener, wait):
    """Payloads that reach ``listener`` within ``wait`` seconds (delivery is asynchronous)."""
    import select
    import time

    deadline = time.monotonic() + wait
    while not listener.notifies and time.monotonic() < deadline:
        select.select([listener], [], [], max(0.0, deadline - time.monotonic()))
        listener.poll()
    payloads = [n.payload for n in listener.notifies]
    listener.notifies.clear()
    return payloads


def test_a_woken_consumer_hands_its_job_out_before_it_announces(broker, sql):
    """The announcement is for the stand-ins; the job does not wait on its round trip. The
    consumer's first answer is the job, and only the next call says the ticket was taken."""
    import dramatiq

    from storage import connection

    consumer = broker.consume("tests-wake", prefetch=8)
    listener = connection.raw_connection("tests-listener")
    listener.autocommit = True
    try:
        message = None
        listener.cursor().execute('LISTEN "dramatiq.tests-wake.enqueue"')
        consumer.answering = ["4242"]  # as _wait_for_work leaves it after a ticket for this consumer
        broker.enqueue(dramatiq.Message(queue_name="tests-wake", actor_name="maintenance.ping", args=(),
                                        kwargs={"note": "hand out first"}, options={}))
        assert len(_heard(listener, 5)) == 1  # the enqueue's own wake-up
        message = next(consumer)
        assert message is not None and message.kwargs == {"note": "hand out first"}
        assert _heard(listener, 0.3) == []  # handed out, not announced yet
        assert next(consumer) is None  # nothing more to claim; the announcement goes out first
        assert _heard(listener, 5) == ["c4242"]
    finally:
        listener.close()
        if message is not None:
            consumer.requeue([message])
        consumer.close()


def test_a_busy_first_choice_is_stood_in_for(broker, monkeypatch, sql):
    from storage import wakeups

    monkeypatch.setattr(wakeups, "STAGGER", 0.05)
    fleet = _idle_fleet(3, "tests-wake")
    consumers = [c for _, _, c in fleet]
    busy_member, _, busy = fleet[2]
    index, peers = busy_member.places["tests-wake"]
    try:
        waiting = consumers[:2]  # the third is busy: it is not waiting on LISTEN
        threads, waited = _wait_all(waiting, 1.5)
        wait_for(lambda: _listening(waiting), message="consumers listening")
        ticket = peers * 1000 + index  # a ticket that picks the busy consumer first
        sql("SELECT pg_notify('dramatiq.tests-wake.enqueue', %s)", (f"t{ticket}:1",))
        for thread in threads:
            thread.join()
        # The nearest stand-in answered after one stagger; the other heard it and slept on.
        assert sorted(round(w, 1) for w in waited)[0] <= 0.2 and sorted(waited)[1] > 1.2, waited
    finally:
        _close(fleet)


def _wake_ups(listener, count=1):
    """The next ``count`` wake-ups ``listener`` hears (delivery is asynchronous), each checked
    to be a ticket payload."""
    import re
    import select
    import time

    deadline = time.monotonic() + 5
    while len(listener.notifies) < count and time.monotonic() < deadline:
        select.select([listener], [], [], max(0.0, deadline - time.monotonic()))
        listener.poll()
    payloads = [n.payload for n in listener.notifies]
    listener.notifies.clear()
    assert len(payloads) == count and all(re.fullmatch(r"t\d+:\d+", p) for p in payloads), payloads
    return payloads


def test_every_enqueue_path_wakes_with_a_ticket_not_the_whole_fleet(broker, sql, database_url):
    """SQL enqueue, unique inserts (new and held keys) and redrives send the ticket payload
    (storage/wakeups.py): one job wakes one idle consumer, not every consumer of the queue."""
    import psycopg2

    from storage import jobs

    sql("INSERT INTO lamplighter.actors (name, queue_name) VALUES ('maintenance.ping', 'maintenance')")
    listener = psycopg2.connect(database_url)
    listener.autocommit = True
    try:
        listener.cursor().execute('LISTEN "dramatiq.maintenance.enqueue"')
        sql("SELECT lamplighter.enqueue('maintenance.ping', '[]')")
        assert [p.rsplit(":", 1)[1] for p in _wake_ups(listener)] == ["1"]
        sql("SELECT lamplighter.enqueue('maintenance.ping', '[]', unique_key => 'wake-once')")
        assert [p.rsplit(":", 1)[1] for p in _wake_ups(listener)] == ["1"]
        actors.maintenance.ping.send_with_options(kwargs={"note": "held"}, unique_key="wake-once")
        assert [p.rsplit(":", 1)[1] for p in _wake_ups(listener)] == ["1"]  # its holder waits: wake for it
        dead = [actors.maintenance.ping.send(note=str(i)).message_id for i in range(3)]
        _wake_ups(listener, 3)
        sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = now(), last_error = 'Boom: x' "
            "WHERE message_id = ANY(%s::uuid[])", (dead,))
        jobs.requeue(dead[0], by="test")
        assert [p.rsplit(":", 1)[1] for p in _wake_ups(listener)] == ["1"]
        jobs.requeue_matching(actor="maintenance.ping", error_type="Boom", by="test")
        assert [p.rsplit(":", 1)[1] for p in _wake_ups(listener)] == ["2"]  # one wake-up, both jobs
    finally:
        listener.close()


def _wait_idle(broker, queue):
    """Until the worker's consumer of ``queue`` waits on LISTEN with nothing in hand."""
    wait_for(lambda: broker.places.get(queue) is not None, message="worker present")
    wait_for(lambda: getattr(broker.consumers.get(queue), "listening", False)
             and not broker.consumers[queue].mine, message="consumer listening, idle")


def test_an_idle_queue_waits_while_another_queue_holds_every_thread(broker, monkeypatch):
    """A worker's threads are shared by the queues it consumes. While one queue's jobs hold all
    of them, the consumer of an idle queue has no room: it waits for room (50 ms at most) and
    does not return at once, which spun its thread and dramatiq's loop around it."""
    import time

    monkeypatch.setattr(broker, "worker_threads", 2)
    busy = broker.consume("tests-busy", prefetch=2)
    idle = broker.consume("tests-idle", prefetch=2)
    try:
        busy.mine.update({"held-1", "held-2"})  # both threads taken by the busy queue's jobs
        calls, deadline = 0, time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert next(idle) is None
            calls += 1
        assert calls <= 20, f"{calls} calls in 0.5 s: the idle consumer spins"
        busy.mine.clear()
    finally:
        idle.close()
        busy.close()


def test_the_listen_session_unlistens_a_channel_whose_last_consumer_left(database_url, sql):
    """A consumer that goes (a consumer restarted on another queue) takes its channel off the
    process's LISTEN session once no other consumer waits on it: the server stops queueing that
    channel's notifications for a session that would only drop them."""
    from storage.engine.listener import Listener

    listener = Listener()
    first = listener.subscribe("dramatiq.tests-a.enqueue")
    second = listener.subscribe("dramatiq.tests-b.enqueue")
    try:
        wait_for(lambda: listener.listening(first.channel) and listener.listening(second.channel),
                 message="both channels listened")
        [(pid,)] = sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name LIKE '%%/listen'")
        listener.unsubscribe(first)
        wait_for(lambda: not listener.listening(first.channel), message="the channel dropped")
        assert listener.listening(second.channel)
        sql("SELECT pg_notify('dramatiq.tests-a.enqueue', 'gone'), pg_notify('dramatiq.tests-b.enqueue', 'here')")
        wait_for(lambda: second.payloads, message="the other channel's notification delivered")
        assert list(first.payloads) == [] and second.drain() == ["here"]
        assert sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == [(1,)]  # same session
    finally:
        listener.unsubscribe(first)
        listener.unsubscribe(second)
