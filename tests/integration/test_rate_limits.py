"""dramatiq's rate limiters and Barrier on storage.rate_limits.PostgresBackend, against the real
PostgreSQL: the behaviour dramatiq's own tests check (tests/test_barrier.py,
test_concurrent_rate_limiter.py, test_window_rate_limiter.py, test_bucket_rate_limiter.py in
dramatiq's repository), with their sleeps replaced by events and a frozen clock."""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from dramatiq.rate_limits import (Barrier, BucketRateLimiter, ConcurrentRateLimiter, RateLimitExceeded,
                                  WindowRateLimiter)

from storage import rate_limits


@pytest.fixture
def backend(database_url):
    made = rate_limits.PostgresBackend()
    yield made
    made.close()


def shift_database_clock(backend, seconds: float) -> None:
    """lamplighter.now() on this thread's backend connection runs ``seconds`` ahead."""
    backend._connection().cursor().execute(f"SET lamplighter.clock_offset = '{seconds}'")


class FrozenTime:
    """time.time() as dramatiq's window and bucket limiters read it."""

    def __init__(self, monkeypatch, start: float):
        self.now = start
        monkeypatch.setattr("dramatiq.rate_limits.window.time.time", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---- the backend's primitives -----------------------------------------------------------------

def test_add_incr_decr_keep_to_their_bounds_and_ttls_run_on_the_database_clock(backend, sql):
    assert backend.add("k", 1, ttl=1000)
    assert not backend.add("k", 5, ttl=1000)
    assert backend.incr("k", 1, maximum=2, ttl=1000)
    assert not backend.incr("k", 1, maximum=2, ttl=1000)
    assert backend.decr("k", 2, minimum=0, ttl=1000)
    assert not backend.decr("k", 1, minimum=0, ttl=1000)
    assert not backend.decr("absent", 1, minimum=0, ttl=1000)
    assert backend.incr("absent", 3, maximum=3, ttl=1000)
    # Past its TTL by the database's clock, a key is gone: add creates it again, incr starts at 0.
    shift_database_clock(backend, 2)
    assert backend.add("k", 7, ttl=60_000)
    assert backend.incr("absent", 3, maximum=3, ttl=1000)
    assert sql("SELECT value FROM lamplighter.rate_limits WHERE key = 'k'") == [(7,)]


def test_prune_deletes_only_expired_keys(backend, sql):
    backend.add("short", 1, ttl=1)
    backend.add("long", 1, ttl=600_000)
    sql("UPDATE lamplighter.rate_limits SET expires_at = now() - interval '1 second' WHERE key = 'short'")
    assert rate_limits.prune(batch_size=100) == 1
    assert [row[0] for row in sql("SELECT key FROM lamplighter.rate_limits")] == ["long"]


def test_an_event_is_kept_for_its_ttl_and_wait_many_names_the_key(backend):
    assert not backend.wait("nothing", 100)
    backend.wait_notify("done@events", ttl=60_000)
    started = time.monotonic()
    assert backend.wait("done@events", 5_000)  # notified before: returns at once
    assert backend.wait_many(["other", "done@events"], 5_000) == "done@events"
    assert time.monotonic() - started < 2


def test_wait_is_woken_by_a_notify_from_another_connection(backend):
    woke = []
    waiting = threading.Event()

    def waiter():
        waiting.set()
        woke.append(backend.wait("late@events", 10_000))

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait(5)
    other = rate_limits.PostgresBackend()
    started = time.monotonic()
    other.wait_notify("late@events", ttl=10_000)
    thread.join(10)
    other.close()
    assert woke == [True]
    assert time.monotonic() - started < 5


# ---- dramatiq's Barrier ----------------------------------------------------------------------

def test_barrier(backend):
    barrier = Barrier(backend, "sequential-barrier", ttl=30000)
    assert barrier.create(parties=2)
    assert not barrier.create(parties=10)
    assert not barrier.wait(block=False)
    assert barrier.wait(block=False)


def test_barriers_can_block(backend):
    barrier = Barrier(backend, f"blocking-{uuid.uuid4()}", ttl=30000)
    assert barrier.create(parties=2)
    times = []

    def worker():
        assert barrier.wait(timeout=10_000)
        times.append(time.monotonic())

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(worker), pool.submit(worker)]:
            future.result()
    assert len(times) == 2
    assert abs(times[0] - times[1]) <= 0.5  # the second party's arrival releases the first


def test_barriers_can_timeout(backend):
    barrier = Barrier(backend, "timeout-barrier", ttl=30000)
    assert barrier.create(parties=2)
    assert not barrier.wait(timeout=300)


# ---- dramatiq's ConcurrentRateLimiter ---------------------------------------------------------

def test_concurrent_rate_limiter_releases_the_lock_after_each_call(backend):
    mutex = ConcurrentRateLimiter(backend, "sequential-test", limit=1)
    calls = 0
    for _ in range(8):
        with mutex.acquire(raise_on_failure=False) as acquired:
            if acquired:
                calls += 1
    assert calls == 8


def run_all_holding(limiter, parties: int) -> int:
    """``parties`` threads try the limiter at once; whoever acquires holds it until every thread
    has tried. Returns how many acquired."""
    tried = threading.Barrier(parties)
    acquired_count = []

    def work():
        try:
            with limiter.acquire():
                acquired_count.append(1)
                tried.wait(20)
        except RateLimitExceeded:
            tried.wait(20)

    with ThreadPoolExecutor(max_workers=parties) as pool:
        for future in [pool.submit(work) for _ in range(parties)]:
            future.result()
    return len(acquired_count)


def test_concurrent_rate_limiter_can_act_as_a_mutex(backend):
    assert run_all_holding(ConcurrentRateLimiter(backend, "concurrent-test", limit=1), 8) == 1


def test_concurrent_rate_limiter_limits_concurrency(backend):
    limiter = ConcurrentRateLimiter(backend, "concurrent-test-4", limit=4)
    assert run_all_holding(limiter, 16) == 4
    # All released: four again.
    assert run_all_holding(limiter, 8) == 4


# ---- dramatiq's WindowRateLimiter and BucketRateLimiter ---------------------------------------

def test_window_rate_limiter_limits_per_window(backend, monkeypatch):
    clock = FrozenTime(monkeypatch, 1_000_000.0)
    limiter = WindowRateLimiter(backend, "window-test", limit=2, window=5)

    def burst(threads=8):
        results = []
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(lambda: limiter.acquire(raise_on_failure=False).__enter__())
                           for _ in range(threads)]:
                results.append(future.result())
        return sum(results)

    assert burst() == 2
    clock.advance(3)
    assert burst() == 0  # still inside the five-second window
    clock.advance(2)
    assert burst() == 2  # the first second left the window


def test_bucket_rate_limiter_limits_per_bucket(backend, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr("dramatiq.rate_limits.bucket.time.time", lambda: now[0])
    limiter = BucketRateLimiter(backend, "bucket-test", limit=2, bucket=1000)
    calls = 0
    for _ in range(2):
        for _ in range(8):
            with limiter.acquire(raise_on_failure=False) as acquired:
                calls += bool(acquired)
        now[0] += 1
    assert calls == 4


# ---- declarative window limits ---------------------------------------------------------------

def test_take_grants_up_to_the_limit_then_reserves_times_one_after_the_other(backend):
    jobs = [str(uuid.uuid4()) for _ in range(6)]
    waits = [backend.take("provider:a", 3, 1000, job) for job in jobs]
    assert waits[:3] == [0, 0, 0]
    assert all(900 <= w <= 1100 for w in waits[3:]), waits
    # A job back early is told its reserved time again, not given a new one.
    assert abs(backend.take("provider:a", 3, 1000, jobs[3]) - waits[3]) <= 50
    # Another key is not touched.
    assert backend.take("provider:b", 3, 1000, jobs[0]) == 0
    # Back at (after) its reserved time, by the database clock: it starts.
    shift_database_clock(backend, 1.2)
    assert backend.take("provider:a", 3, 1000, jobs[3]) == 0


def test_the_pruning_actor_deletes_expired_results_keys_and_old_group_members(backend, sql):
    from actors import jobs as job_actors

    backend.add("expired", 1, ttl=60_000)
    backend.add("live", 1, ttl=60_000)
    sql("UPDATE lamplighter.rate_limits SET expires_at = now() - interval '1 second' WHERE key = 'expired'")
    sql("INSERT INTO lamplighter.job_results (message_key, result, expires_at) VALUES "
        "('old', '1', now() - interval '1 second'), ('new', '2', now() + interval '1 hour')")
    # A member written before the barrier's day, with no barrier left: nothing fires on insert.
    sql("INSERT INTO lamplighter.group_members (group_id, job_id, callbacks, at) VALUES "
        "('gone', gen_random_uuid(), '[]', now() - interval '3 days')")
    assert job_actors.prune_results_and_limits.fn() == {"results": 1, "rate_limit_keys": 1, "group_members": 1}
    assert sql("SELECT key FROM lamplighter.rate_limits") == [("live",)]
    assert sql("SELECT message_key FROM lamplighter.job_results") == [("new",)]
