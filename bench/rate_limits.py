#!/usr/bin/env python3
"""Rate-limiter operations per second: storage.rate_limits.PostgresBackend against dramatiq's
RedisBackend, in the same run, and get_result latency after a finish.

    DATABASE_URL=postgresql://... REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/rate_limits.py [--threads 8] [--seconds 3]

Needs the `redis` package for the Redis row (pip install redis); without it, or without a Redis
server, that row says why. On demand only, never from the test suite. The database must be
migrated (lamplighter migrate); keys are written under a random prefix and left to expire.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def operations(backend, prefix: str):
    """The operations dramatiq's limiters make: a concurrent limiter's acquire + release
    (add or incr, then decr) and a window limiter's acquire (incr_and_sum)."""
    from dramatiq.rate_limits import ConcurrentRateLimiter, WindowRateLimiter

    concurrent = ConcurrentRateLimiter(backend, f"{prefix}:concurrent", limit=1_000_000)
    window = WindowRateLimiter(backend, f"{prefix}:window", limit=10_000_000, window=10)

    def concurrent_op():
        with concurrent.acquire(raise_on_failure=False):
            pass

    def window_op():
        with window.acquire(raise_on_failure=False):
            pass

    return {"concurrent acquire+release": concurrent_op, "window acquire": window_op}


def rate(op, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def run(i):
        while time.monotonic() < stop:
            op()
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def result_latency(samples: int) -> list[float]:
    """ms from a result's write (as the finish does it: a row in lamplighter.job_results, in its
    own transaction) to a blocking get_result's return in another thread."""
    from dramatiq import Message

    from storage.results import PostgresResultBackend

    reader, writer = PostgresResultBackend(), PostgresResultBackend()
    out = []
    for _ in range(samples):
        message = Message(queue_name="bench", actor_name="bench.add", args=(), kwargs={}, options={},
                          message_id=str(uuid.uuid4()))
        got = {}

        def wait():
            got["value"] = reader.get_result(message, block=True, timeout=5000)
            got["at"] = time.perf_counter()

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.02)  # the reader is waiting on LISTEN (a bench, not a test)
        written = time.perf_counter()
        writer.store_result(message, {"ok": True}, 60_000)
        t.join()
        out.append((got["at"] - written) * 1000)
    return out


def worker_result_latency(samples: int) -> tuple[list[float], list[float]]:
    """Through a real worker (in this process, 2 threads, shipped settings): ms from the job's
    finish (its history row's finished_at, the worker's clock) to get_result(block=True)'s return,
    and from send to that return. One job at a time: light load."""
    import dramatiq

    import actors
    from storage import connection

    @dramatiq.actor(broker=actors.broker, actor_name="bench.echo", queue_name="bench-results", max_retries=0,
                    store_results=True)
    def echo(n: int) -> dict:
        return {"n": n}

    worker = dramatiq.Worker(actors.broker, worker_threads=2, queues=["bench-results"])
    worker.start()
    after_finish, round_trip = [], []
    try:
        conn = connection.raw_connection("bench")
        conn.autocommit = True
        echo.send(-1).get_result(block=True, timeout=30_000)  # warm: prepared statements, LISTEN
        for n in range(samples):
            sent = time.time()
            message = echo.send(n)
            assert message.get_result(block=True, timeout=10_000) == {"n": n}
            returned = time.time()
            cur = conn.cursor()
            cur.execute("SELECT extract(epoch FROM finished_at) FROM lamplighter.job_history WHERE job_id = %s",
                        (message.message_id,))
            after_finish.append((returned - float(cur.fetchone()[0])) * 1000)
            round_trip.append((returned - sent) * 1000)
    finally:
        worker.stop()
    return after_finish, round_trip


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"median {statistics.median(ordered):.1f}, p95 {ordered[int(len(ordered) * 0.95) - 1]:.1f}, "
            f"max {ordered[-1]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    from storage import rate_limits

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    rows = {}
    rows["postgres"] = {name: rate(op, args.threads, args.seconds)
                        for name, op in operations(rate_limits.PostgresBackend(), prefix).items()}
    try:
        import redis
        from dramatiq.rate_limits.backends import RedisBackend

        client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
        client.ping()
        rows["redis"] = {name: rate(op, args.threads, args.seconds)
                         for name, op in operations(RedisBackend(client=client), prefix).items()}
    except Exception as exc:  # no package or no server: say so in the table
        rows["redis"] = {"unavailable": f"{type(exc).__name__}: {exc}"}
    for backend, figures in rows.items():
        print(backend, {k: (round(v) if isinstance(v, float) else v) for k, v in figures.items()})
    print("get_result(block=True) after a result row's commit, ms:", summary(result_latency(50)))
    after_finish, round_trip = worker_result_latency(100)
    print("get_result(block=True) after the worker's finish, ms:", summary(after_finish))
    print("send -> get_result(block=True) returned, ms:", summary(round_trip))


if __name__ == "__main__":
    main()
