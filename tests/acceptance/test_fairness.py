"""Long jobs enqueued at once spread over the idle worker processes instead of queueing up in the
one that answered the wake-up. Two processes of 8 threads (dramatiq's CLI over tests.worker_app),
both idle, 24 jobs of 3 s sent in one statement: 16 threads run them in two rounds, 6 s; one
process that took all 24 needs three rounds, 9 s, while the other's threads idle."""
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
