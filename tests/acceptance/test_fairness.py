"""Long jobs are shared between worker processes instead of queueing up in one of them, and
sharing them never runs one twice. Processes of 8 threads (dramatiq's CLI over tests.worker_app);
the jobs (tests.timed) record every execution in a file."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from tests import executions
from tests.conftest import wait_for
from tests.executions import send
from tests.job_records import record_problems, settled, states

pytestmark = pytest.mark.acceptance

JOBS, SECONDS = 24, 3.0
# Two rounds of jobs, and a second for the wake-up, claims and the finishes' commits.
BOUND = 2 * SECONDS + 1


def test_long_jobs_sent_at_once_spread_over_idle_worker_processes(database_url, broker, sql, worker_processes,
                                                                  tmp_path):
    """Two idle processes, 24 jobs of 3 s sent in one statement: 16 threads run them in two
    rounds, 6 s; one process that took all 24 needs three rounds, 9 s, while the other idles."""
    import tests.worker_app as app

    path = tmp_path / "executions.log"
    workers = [worker_processes.start(name, database_url, sql) for name in ("a", "b")]
    # Idle and aware of each other: each has beaten its heart since the second one registered
    # (a heartbeat refreshes a worker's place among the queue's workers).
    wait_for(lambda: sql("SELECT bool_and(heartbeat_at > (SELECT max(started_at) FROM lamplighter.workers) "
                         "+ interval '0.6 seconds') FROM lamplighter.workers") == [(True,)],
             timeout=30, message="both workers beating")
    sent_at = time.time()
    tags = send(broker, path, [(app.timed, f"j{i}", SECONDS) for i in range(JOBS)])
    try:
        wait_for(lambda: settled(sql) and executions.all_ended(path), timeout=60, message="the drain")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job states {states(sql)}\n{worker_processes.logs()}") from None

    runs = executions.read(path)
    drain = max(e.ended for e in runs) - sent_at
    per_process = Counter(e.pid for e in runs)
    shares = ", ".join(f"{w.name}: {per_process[w.pid]}" for w in workers)
    assert drain <= BOUND and all(per_process[w.pid] for w in workers), (
        f"{JOBS} jobs of {SECONDS:g} s on 2 processes x 8 threads drained in {drain:.1f} s (bound {BOUND:g} s: "
        f"two rounds and a second); jobs run per process: {shares}")
    assert len(runs) == JOBS
    assert record_problems(sql, tags) == []


def test_jobs_claimed_while_every_thread_is_busy_run_once(database_url, broker, sql, worker_processes, tmp_path):
    """A process whose 8 threads are busy with another queue's long jobs claims jobs of a queue
    that a second, equally busy process also consumes. However often those waiting jobs are
    handed back to the queue (and claimed again by the same process, the only one that claims),
    each runs once when a thread frees: a message dramatiq already holds for a job handed back
    must not run as well."""
    import tests.worker_app as app

    path = tmp_path / "executions.log"
    other = worker_processes.start("other", database_url, sql, queues=["tests-outage"])
    tags = send(broker, path, [(app.timed, f"o{i}", 12.0) for i in range(8)])
    wait_for(lambda: executions.read(path) and len([e for e in executions.read(path) if e.open]) == 8,
             timeout=30, message="the other process's 8 threads busy")
    busy = worker_processes.start("busy", database_url, sql, queues=["tests-outage", "tests-outage-2"])
    tags.update(send(broker, path, [(app.timed, f"b{i}", 10.0) for i in range(8)], queue="tests-outage-2"))
    wait_for(lambda: len([e for e in executions.read(path) if e.open]) == 16, timeout=30,
             message="both processes' 8 threads busy")
    waiting = send(broker, path, [(app.timed, f"w{i}", 1.0) for i in range(8)])
    tags.update(waiting)
    try:
        wait_for(lambda: settled(sql) and executions.all_ended(path), timeout=60, message="every job done")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job states {states(sql)}\n{worker_processes.logs()}") from None
    for worker in (other, busy):
        worker.stop()

    runs = executions.read(path)
    twice = [f"{tag} ran {n} times" for tag in sorted(tags) if (n := sum(e.tag == tag for e in runs)) != 1]
    at_once = [f"{a} | {b}" for a, b in executions.runs_at_once(runs, {})]
    assert (twice, at_once) == ([], []), (
        f"{worker_processes.describe()}; {len(runs)} executions of {len(tags)} jobs:\n"
        + "\n".join(twice + at_once[:10]))
    assert record_problems(sql, tags) == []
