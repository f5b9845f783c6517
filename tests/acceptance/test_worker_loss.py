"""A worker process that stops heartbeating loses its jobs to the live workers once its lease is
over (README "Delivery and crashes"): killed (kill -9), or paused (SIGSTOP: what a long stall, a
frozen container or a suspended VM look like) and later resumed. Worker processes are dramatiq's
CLI over tests.worker_app, 8 threads each; the jobs (tests.timed) write each start and end, with
their process, to a file, so every execution is seen, recorded by the database or not.
"""
from __future__ import annotations

import time

import pytest

from tests import executions
from tests.conftest import FAST_ENV, wait_for
from tests.executions import send
from tests.job_records import held_by, history, record_problems, settled, states

pytestmark = pytest.mark.acceptance

LEASE = float(FAST_ENV["LAMPLIGHTER_LEASE_TIMEOUT"])


def _waiting(sql, worker_processes, condition, *, timeout: float, message: str):
    try:
        return wait_for(condition, timeout=timeout, interval=0.05, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job states {states(sql)}\n{worker_processes.logs()}") from None


def test_a_worker_declared_dead_does_not_run_what_it_had_claimed(database_url, broker, sql, worker_processes,
                                                                  tmp_path):
    """Paused for longer than the lease with 8 jobs running and 16 claimed but not started, then
    resumed after another worker has taken them over: only the 8 that were running may run
    twice, and what the paused process finishes late changes no record of the rescuer's runs."""
    import tests.worker_app as app

    path = tmp_path / "executions.log"
    paused = worker_processes.start("paused", database_url, sql)
    # 24 jobs of 3 s on 8 threads: its claim window (50) takes them all, 8 run, 16 wait.
    tags = send(broker, path, [(app.timed, f"j{i}", 3.0) for i in range(24)])
    _waiting(sql, worker_processes, lambda: len(held_by(sql, paused.worker_id)[0]) == 8, timeout=30,
             message="8 jobs running in the worker to pause")
    running, waiting = held_by(sql, paused.worker_id)
    paused.pause()
    stopped = time.monotonic()
    rescuer = worker_processes.start("rescuer", database_url, sql)
    ids = {i: t for t, i in tags.items()}
    taken = {ids[i] for i in running | waiting}

    def taken_over():
        return time.monotonic() - stopped >= LEASE + 1 and any(
            e.pid == rescuer.pid and e.tag in taken for e in executions.read(path))

    _waiting(sql, worker_processes, taken_over, timeout=30, message="the rescuer running the paused worker's jobs")
    paused.resume()
    _, resumed = paused.frozen[-1]
    _waiting(sql, worker_processes, lambda: settled(sql), timeout=60, message="every job settled")
    _waiting(sql, worker_processes, lambda: executions.all_ended(path), timeout=30, message="every execution ended")
    for worker in (paused, rescuer):
        worker.stop()  # SIGTERM: the finishers write what is left, late finishes included

    runs = executions.read(path)
    rows = history(sql)
    process_of = {rescuer.worker_id: rescuer.pid}  # any other worker id is the paused process's

    def recorded(execution) -> bool:
        """The database has a history row for this very run: its worker and its start."""
        return any(process_of.get(worker_id, paused.pid) == execution.pid and abs(started - execution.started) < 0.5
                   for _, _, worker_id, started in rows.get(tags[execution.tag], []))

    problems = [f"job {a.tag} ran twice at once: {a} | {b}"
                for a, b in executions.runs_at_once(runs, worker_processes.frozen())]
    unstarted = {ids[i] for i in waiting}
    stale = [e for e in runs if e.pid == paused.pid and e.started > resumed and e.tag in unstarted and not recorded(e)]
    if stale:
        problems.append(f"the paused process ran {len(stale)} of the {len(unstarted)} jobs it had claimed but not "
                        "started, after it was resumed, unrecorded: " + ", ".join(sorted(e.tag for e in stale)))
    reruns = len(runs) - len({e.tag for e in runs})
    if reruns > len(running):
        problems.append(f"{reruns} re-runs; at most {len(running)} expected (the jobs that were running when the "
                        "process was paused)")
    for tag, job_id in sorted(tags.items()):
        final = [row for row in rows.get(job_id, []) if row[1] == "completed"]
        if final and not any(e.tag == tag and e.started > paused.frozen[-1][0] and recorded(e) for e in runs):
            problems.append(f"job {tag}: its completed history row {final[-1]} is not a run that started after the "
                            "pause (a late finish of the paused process overwrote the rescuer's record)")
    problems += record_problems(sql, tags)
    assert problems == [], (f"{worker_processes.describe()}; paused with {len(running)} jobs running and "
                            f"{len(waiting)} claimed, not started; {len(runs)} executions of {len(tags)} jobs:\n"
                            + "\n".join(problems))


def test_a_killed_workers_jobs_are_rescued_within_ten_seconds(database_url, broker, sql, worker_processes,
                                                              tmp_path):
    """kill -9 of a worker process running 8 jobs: with the production lease (7 s) and heartbeat
    (2 s), another worker hands them back within 10 s, runs them again, and history shows each
    first attempt lost and the second completed."""
    import tests.worker_app as app

    timings = {"LAMPLIGHTER_LEASE_TIMEOUT": "7", "LAMPLIGHTER_HEARTBEAT_INTERVAL": "2"}
    path = tmp_path / "executions.log"
    killed = worker_processes.start("killed", database_url, sql, **timings)
    tags = send(broker, path, [(app.timed, f"j{i}", 6.0) for i in range(8)])
    _waiting(sql, worker_processes, lambda: len(held_by(sql, killed.worker_id)[0]) == 8, timeout=30,
             message="8 jobs running in the worker to kill")
    rescuer = worker_processes.start("rescuer", database_url, sql, **timings)
    killed.kill()
    at = time.monotonic()
    _waiting(sql, worker_processes, lambda: held_by(sql, killed.worker_id) == (set(), set()), timeout=30,
             message="the killed worker's jobs handed back")
    rescued_after = time.monotonic() - at
    assert rescued_after <= 10, f"the killed worker's jobs were handed back {rescued_after:.1f} s after kill -9"

    _waiting(sql, worker_processes, lambda: settled(sql), timeout=30, message="every job settled")
    rescuer.stop()
    runs = executions.read(path)
    assert sorted((e.tag, e.pid) for e in runs) == sorted(
        [(t, killed.pid) for t in tags] + [(t, rescuer.pid) for t in tags])
    assert record_problems(sql, tags) == []
    assert {tuple(row[:2] for row in rows) for rows in history(sql).values()} == {((1, "lost"), (2, "completed"))}
