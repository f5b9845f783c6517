"""PostgreSQL goes away for longer than the workers' lease, then comes back.

README "Delivery and crashes": any live worker hands back the jobs of a worker silent for
LAMPLIGHTER_LEASE_TIMEOUT. An outage of the database silences every worker at once, though none
of them died. Each test stops a throwaway cluster (tests/pg_cluster.py; never the shared server)
for 8 s, over twice the 3 s lease, under two worker processes of 8 threads (dramatiq's CLI over
tests.worker_app) running jobs of several seconds that outlive the outage. The jobs
(tests.timed) write each start and end, with their process, to a file: the database cannot
count executions while it is down.

* Both workers live through the outage: neither re-runs the other's jobs.
* One of them is paused (SIGSTOP) through the outage and resumed more than a lease after the
  server is back, once the other has taken its jobs over: no job runs twice at once (a second
  run that starts while the first one's process is stopped is the rescue, not a double run), none
  goes dead, each attempt has one history row, a concurrency limit of 2 holds, every job
  completes, and the live worker's own jobs run once.
"""
from __future__ import annotations

import time

import pytest

from tests import executions
from tests.conftest import wait_for
from tests.executions import send
from tests.job_records import held_by, history, record_problems, settled, states

pytestmark = pytest.mark.acceptance

LEASE = 3.0
OUTAGE = 8.0
TIMINGS = {"LAMPLIGHTER_LEASE_TIMEOUT": f"{LEASE:g}", "LAMPLIGHTER_HEARTBEAT_INTERVAL": "0.5"}
# Each worker process is given its jobs on a queue only it consumes (or consumes first), so that
# which process holds which jobs does not depend on how a claim spreads them.
QUEUE, OTHER_QUEUE = "tests-outage", "tests-outage-2"


def _waiting(cluster, worker_processes, condition, *, timeout: float, message: str):
    try:
        return wait_for(condition, timeout=timeout, interval=0.1, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job states {states(cluster.sql)}\n{worker_processes.logs()}") from None


def _outage(cluster) -> tuple[float, float]:
    """Stop the server for OUTAGE seconds; returns when it was back (monotonic, time.time())."""
    cluster.stop_fast()
    down = time.monotonic()
    wait_for(lambda: time.monotonic() - down >= OUTAGE, timeout=OUTAGE + 5, message="the outage")
    cluster.start()
    return time.monotonic(), time.time()


def _wind_down(cluster, worker_processes, path) -> None:
    """Every job settled, every execution over, then both workers stopped (SIGTERM: their
    finishers write what is left, late finishes included)."""
    _waiting(cluster, worker_processes, lambda: settled(cluster.sql), timeout=90, message="every job settled")
    _waiting(cluster, worker_processes, lambda: executions.all_ended(path), timeout=30,
             message="every execution ended")
    for worker in worker_processes.started:
        worker.stop()


def test_live_workers_keep_their_jobs_through_an_outage_longer_than_the_lease(cluster, worker_processes, tmp_path):
    import tests.worker_app as app
    from actors import broker

    path = tmp_path / "executions.log"
    first = worker_processes.start("a", cluster.url, cluster.sql, queues=[QUEUE], **TIMINGS)
    second = worker_processes.start("b", cluster.url, cluster.sql, queues=[OTHER_QUEUE], **TIMINGS)
    # 16 s: they start before the outage and end about 7 s after the server is back, when every
    # connection of both workers is back too (reconnects back off up to 5 s between tries).
    tags = send(broker, path, [(app.timed, f"job{i}", 16.0) for i in range(8)], queue=QUEUE)
    tags.update(send(broker, path, [(app.timed, f"job{i}", 16.0) for i in range(8, 16)], queue=OTHER_QUEUE))
    _waiting(cluster, worker_processes,
             lambda: all(len(held_by(cluster.sql, w.worker_id)[0]) == 8 for w in (first, second)),
             timeout=30, message="8 jobs running in each worker")

    _outage(cluster)

    def lost_or_done():
        lost = cluster.sql("SELECT count(*) FROM lamplighter.job_history WHERE outcome = 'lost'") != [(0,)]
        return lost or cluster.sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'completed'") == [(16,)]

    _waiting(cluster, worker_processes, lost_or_done, timeout=60,
             message="every job completed (or one recorded lost)")
    names = {w.worker_id: w.name for w in (first, second)}
    ids = {i: t for t, i in tags.items()}
    lost = [f"{ids[job_id]} (attempt {attempt}, held by worker {names.get(worker_id, worker_id)})"
            for job_id, rows in history(cluster.sql).items()
            for attempt, outcome, worker_id, _ in rows if outcome == "lost"]
    assert lost == [], (f"{len(lost)} jobs running on live workers were handed back as lost after a {OUTAGE:g} s "
                        f"outage (lease {LEASE:g} s), to run again: {', '.join(lost)}")

    _wind_down(cluster, worker_processes, path)
    runs = executions.read(path)
    problems = [f"{tag} ran {n} times" for tag in tags if (n := sum(e.tag == tag for e in runs)) != 1]
    problems += record_problems(cluster.sql, tags)
    assert problems == [], "\n".join(problems)


def test_an_outage_longer_than_the_lease_with_one_worker_paused_through_it(cluster, worker_processes, tmp_path):
    import tests.worker_app as app
    from actors import broker

    path = tmp_path / "executions.log"
    sql = cluster.sql
    # The worker to pause has the first queue to itself while its jobs are claimed: 8 run, the
    # rest wait in the process (a claim batch takes them all); 4 of the 6 limited jobs find no free
    # slot and stay queued.
    paused = worker_processes.start("paused", cluster.url, sql, queues=[QUEUE], **TIMINGS)
    tags = send(broker, path, [(app.timed, f"p{i}", 5.0) for i in range(14)]
                + [(app.timed_limited, f"lim{i}", 2.0) for i in range(6)])
    _waiting(cluster, worker_processes, lambda: len(held_by(sql, paused.worker_id)[0]) == 8, timeout=30,
             message="8 jobs running in the worker to pause")
    # The live worker consumes that queue too, and has its own jobs on the second one: they
    # outlive the outage (they end 2 s after the server is back).
    survivor = worker_processes.start("survivor", cluster.url, sql, queues=[QUEUE, OTHER_QUEUE], **TIMINGS)
    own = send(broker, path, [(app.timed, f"s{i}", 14.0) for i in range(8)], queue=OTHER_QUEUE)
    _waiting(cluster, worker_processes, lambda: len(held_by(sql, survivor.worker_id)[0]) == 8, timeout=30,
             message="the live worker's 8 jobs running")
    tags.update(own)
    running, waiting = held_by(sql, paused.worker_id)
    ids = {i: t for t, i in tags.items()}
    taken = {ids[i] for i in running | waiting}

    paused.pause()
    back, back_at = _outage(cluster)

    def taken_over():
        return time.monotonic() - back >= LEASE + 1 and any(
            e.pid == survivor.pid and e.tag in taken and e.started >= back_at for e in executions.read(path))

    _waiting(cluster, worker_processes, taken_over, timeout=40,
             message="the live worker running jobs it took from the paused one")
    paused.resume()
    _wind_down(cluster, worker_processes, path)

    runs = executions.read(path)
    frozen = worker_processes.frozen()
    problems = [f"job {a.tag} ran twice at once: {a} | {b}" for a, b in executions.runs_at_once(runs, frozen)]
    limited = {t for t in tags if t.startswith("lim")}
    problems += [f"limit of 2 broken: {e} started while {len(others)} ran: " + "; ".join(map(str, others))
                 for e, others in executions.over_limit(runs, limited, 2, frozen)]
    problems += [f"the live worker's own job {tag} ran {n} times"
                 for tag in own if (n := sum(e.tag == tag for e in runs)) != 1]
    problems += record_problems(sql, tags)
    assert problems == [], (
        f"{worker_processes.describe()}; paused with {len(running)} jobs running and {len(waiting)} claimed, "
        f"not started; {len(runs)} executions of {len(tags)} jobs:\n" + "\n".join(problems))
