"""A dramatiq app for subprocess workers in tests: the real actors package plus test-only
actors. `python -m dramatiq tests.worker_app --queues tests-slow` (cwd: the repository)."""
from __future__ import annotations

import os
import signal
import time

import dramatiq

import actors
from domain.outcomes import Cancel
from storage import engine as broker_module
from storage import connection
from storage.rate_limits import RateLimit

broker = actors.broker


@dramatiq.actor(broker=broker, actor_name="tests.sleep", queue_name="tests-slow", max_retries=3,
                time_limit=120_000)
def sleep(seconds: float, label: str = "") -> dict:
    """Sleeps in small steps (so TimeLimit and Shutdown can interrupt it between them); stops
    early with Cancel when an operator asks."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return {"slept": seconds, "label": label}


@dramatiq.actor(broker=broker, actor_name="tests.until_cancelled", queue_name="tests-slow", max_retries=0,
                time_limit=60_000)
def until_cancelled(limit_seconds: float = 30.0) -> str:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if broker_module.cancel_requested():
            raise Cancel("stopped at the operator's request")
        time.sleep(0.05)
    return "ran to the end"


@dramatiq.actor(broker=broker, actor_name="tests.overlap", queue_name="tests-slow", max_retries=0,
                time_limit=60_000, concurrency_limit=2)
def overlap(tag: str, seconds: float = 0.3) -> None:
    """Records when it ran, for concurrency tests across worker processes."""
    conn = connection.raw_connection("tests-overlap")
    try:  # the test creates public.tests_overlap (tag text, started timestamptz, ended timestamptz)
        started = time.time()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
        with conn:
            conn.cursor().execute("INSERT INTO public.tests_overlap VALUES (%s, to_timestamp(%s), clock_timestamp())",
                                  (tag, started))
    finally:
        conn.close()


@dramatiq.actor(broker=broker, actor_name="tests.record", queue_name="tests-record", max_retries=3,
                time_limit=60_000)
def record(path: str, pause: float = 0.0) -> None:
    """Appends this job's id to the file ``path``, one line per execution, without touching the
    database under test (tests that restart PostgreSQL count executions with it)."""
    if pause:
        time.sleep(pause)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write(2) with O_APPEND: lines from concurrent threads never interleave
        os.write(fd, f"{broker_module.current_job_id.get()}\n".encode())
    finally:
        os.close(fd)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write(2) with O_APPEND: lines from concurrent threads and processes never interleave
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _run_timed(path: str, tag: str, seconds: float) -> None:
    """Appends '<tag> start <pid> <time>' to ``path``, runs ``seconds`` of wall time in small
    steps (so an interruption lands between them), then, however it ends, '<tag> end <pid> <time>
    <how>' (``ok``, or the exception's class, e.g. Shutdown). Times are time.time(): one clock for
    every process of the machine. tests/executions.py reads the file."""
    _append(path, f"{tag} start {os.getpid()} {time.time():.6f}\n")
    how = "ok"
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
    except BaseException as exc:
        how = type(exc).__name__
        raise
    finally:
        _append(path, f"{tag} end {os.getpid()} {time.time():.6f} {how}\n")


@dramatiq.actor(broker=broker, actor_name="tests.poison", queue_name="tests-poison", max_retries=1,
                time_limit=60_000)
def poison() -> None:
    """Kills its own worker process as it starts (a segfault, the OOM killer)."""
    os.kill(os.getpid(), signal.SIGKILL)


@dramatiq.actor(broker=broker, actor_name="tests.dies_once", queue_name="tests-outage", max_retries=3,
                time_limit=60_000)
def dies_once(path: str, tag: str) -> None:
    """Kills its own worker process the first time it runs, the moment it starts (its start line
    written first); runs normally after that (a marker file beside ``path`` remembers)."""
    _append(path, f"{tag} start {os.getpid()} {time.time():.6f}\n")
    marker = f"{path}.{tag}.died"
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    _append(path, f"{tag} end {os.getpid()} {time.time():.6f} ok\n")


@dramatiq.actor(broker=broker, actor_name="tests.timed", queue_name="tests-outage", max_retries=3,
                time_limit=120_000)
def timed(path: str, tag: str, seconds: float) -> None:
    """A job of ``seconds`` whose executions are recorded outside the database under test (which
    the outage tests stop): every start and end, with the process, in the file ``path``."""
    _run_timed(path, tag, seconds)


@dramatiq.actor(broker=broker, actor_name="tests.timed_limited", queue_name="tests-outage", max_retries=3,
                time_limit=120_000, concurrency_limit=2)
def timed_limited(path: str, tag: str, seconds: float) -> None:
    """tests.timed, at most two at once across every worker process."""
    _run_timed(path, tag, seconds)


# A second queue for tests.timed jobs, sent to it by name as `lamplighter enqueue --queue` does:
# the outage tests give a worker process a queue of its own.
OTHER_OUTAGE_QUEUE = "tests-outage-2"
broker.declare_queue(OTHER_OUTAGE_QUEUE)


@dramatiq.actor(broker=broker, actor_name="tests.query", queue_name="tests-db", max_retries=0, time_limit=60_000)
def query(seconds: float = 0.2) -> None:
    """Holds its thread's database connection for ``seconds`` (the connection budget's test)."""
    connection.init_database().execute_sql("SELECT pg_sleep(%s)", (seconds,))


@dramatiq.actor(broker=broker, actor_name="tests.window_limited", queue_name="tests-outage", max_retries=0,
                time_limit=60_000, rate_limit=RateLimit(key="provider:{provider}", limit=10, window=1))
def window_limited(provider: str, n: int) -> None:
    """At most 10 starts a second per provider, across every worker process (storage/rate_limits.py)."""
