"""A worker survives a PostgreSQL restart in the middle of a drain, and loses nothing.

The shared server must never be restarted, so each test gets a throwaway cluster of its own
(tests/pg_cluster.py). The worker is dramatiq's CLI over
tests.worker_app in a subprocess, as in production; the test actor appends its job id to a file,
so executions are counted outside the database being restarted. The server goes away under the
worker once part of a 3,000-job backlog is done:

* a clean restart (`pg_ctl restart -m fast`: backends terminated, shutdown checkpoint);
* a crash (`pg_ctl stop -m immediate`, then start: crash recovery replays the WAL).

Then every job ran at least once, every job row is `completed` with a history row for its last
attempt, nothing is left `running`, and the same worker process is alive with a heartbeat
written after the restart. A third test crashes the server while the worker is quiet (one long
job running, every connection idle): the job's finish is then the first statement the worker
sends, alone, on a connection the crash broke silently.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, lamplighter_env, wait_for

JOBS = 3000
# A few ms per job: the drain takes seconds, so the restart surely lands in the middle of it.
PAUSE = 0.004
# The server is restarted once this many jobs are completed.
RESTART_AFTER = 500


@pytest.fixture
def start_worker(cluster, tmp_path):
    """`dramatiq tests.worker_app` on the tests-record queue against the cluster, in its own
    process group; stopped (SIGTERM, then SIGKILL of the group) at teardown."""
    started = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / "worker.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "dramatiq", "tests.worker_app", "--processes", "1",
                                 "--threads", "4", "--queues", "tests-record", "--skip-logging"],
                                cwd=ROOT, env=lamplighter_env(DATABASE_URL=cluster.url), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the forked worker process too, if still there
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()


def _states(cluster) -> dict[str, int]:
    return dict(cluster.sql("SELECT state, count(*) FROM dramatiq.queue GROUP BY state"))


def _completed(cluster) -> int:
    return _states(cluster).get("completed", 0)


def _diagnosis(cluster, proc, tmp_path, message: str) -> str:
    log = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
    return (f"{message}; states {_states(cluster)}, worker exit code {proc.poll()}\n"
            f"--- worker log (tail) ---\n{log}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _drain_across(cluster, start_worker, tmp_path, outage) -> None:
    import tests.worker_app as app
    from actors import broker

    executions = tmp_path / "executions.log"
    sent = broker.enqueue_many([app.record.message(str(executions), PAUSE) for _ in range(JOBS)])
    job_ids = {m.message_id for m in sent}
    assert len(job_ids) == JOBS

    proc = start_worker()

    def diagnose(message: str) -> str:
        return _diagnosis(cluster, proc, tmp_path, message)

    try:
        wait_for(lambda: _completed(cluster) >= RESTART_AFTER, timeout=60, interval=0.05,
                 message=f"{RESTART_AFTER} jobs completed before the restart")
    except AssertionError as exc:
        raise AssertionError(diagnose(str(exc))) from None
    [(worker_id, worker_pid)] = cluster.sql("SELECT id, pid FROM lamplighter.workers")
    # The restart lands mid-drain: most of the backlog is still waiting.
    assert _completed(cluster) < JOBS - 1000

    outage()

    try:
        wait_for(lambda: _completed(cluster) == JOBS, timeout=90, interval=0.1,
                 message="every job completed after the restart")
    except AssertionError as exc:
        raise AssertionError(diagnose(str(exc))) from None

    # Every job ran at least once (at-least-once: a re-run is allowed, a loss is not), and
    # nothing ran that was not sent.
    ran = executions.read_text().split()
    assert job_ids - set(ran) == set()
    assert set(ran) <= job_ids

    # Every row ended completed (none left running), with a history row for its last attempt.
    assert _states(cluster) == {"completed": JOBS}
    assert cluster.sql("""
        SELECT count(*) FROM dramatiq.queue q
        WHERE NOT EXISTS (SELECT 1 FROM lamplighter.job_history h
                          WHERE h.job_id = q.message_id AND h.attempt = q.attempt
                            AND h.outcome = 'completed')""") == [(0,)]
    assert cluster.sql("SELECT count(*) FROM lamplighter.job_history WHERE outcome <> 'completed'") == [(0,)]

    # The same worker process lived through it: no restart of the process, no second
    # registration; its heartbeat row is written by the restarted server.
    assert proc.poll() is None, diagnose("dramatiq's main process exited")
    assert _alive(worker_pid), diagnose(f"worker process {worker_pid} is gone")
    assert cluster.sql("SELECT id, pid FROM lamplighter.workers") == [(worker_id, worker_pid)]
    wait_for(lambda: cluster.sql("""
        SELECT heartbeat_at > pg_postmaster_start_time()
               AND heartbeat_at > lamplighter.now() - interval '5 seconds'
        FROM lamplighter.workers WHERE id = %s""", (worker_id,)) == [(True,)],
             timeout=30, message="a heartbeat written after the restart")


def test_worker_survives_a_clean_restart_mid_drain(cluster, start_worker, tmp_path):
    _drain_across(cluster, start_worker, tmp_path, outage=cluster.restart_fast)


def test_worker_survives_a_crash_and_recovery_mid_drain(cluster, start_worker, tmp_path):
    _drain_across(cluster, start_worker, tmp_path, outage=cluster.crash_and_recover)


def test_a_job_running_through_a_crash_is_recorded_when_it_ends(cluster, start_worker, tmp_path):
    """The crash comes while the worker is quiet: one long job running, its start recorded,
    every connection idle. After recovery the job's finish is the first statement the worker
    sends, alone in its batch, on a connection the crash broke without the worker noticing
    yet. It must be written, not dropped (a dropped finish leaves the row `running` for as
    long as this healthy worker lives: nobody rescues the jobs of a worker that heartbeats)."""
    import tests.worker_app as app
    from actors import broker

    executions = tmp_path / "executions.log"
    [sent] = broker.enqueue_many([app.record.message(str(executions), 4.0)])
    proc = start_worker()
    wait_for(lambda: cluster.sql("SELECT started_at IS NOT NULL FROM dramatiq.queue") == [(True,)],
             timeout=60, message="the long job started")
    cluster.crash_and_recover(down=0.5)
    try:
        wait_for(lambda: _completed(cluster) == 1, timeout=30, interval=0.1, message="the long job completed")
    except AssertionError as exc:
        raise AssertionError(_diagnosis(cluster, proc, tmp_path, str(exc))) from None
    assert executions.read_text().split() == [sent.message_id]
    assert cluster.sql("SELECT attempt, outcome FROM lamplighter.job_history") == [(1, "completed")]
    assert proc.poll() is None
