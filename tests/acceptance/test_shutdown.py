"""Graceful shutdown of a real worker: dramatiq's CLI over tests.worker_app in a subprocess,
SIGTERM mid-job."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import tests.worker_app as app
from storage import jobs
from tests.conftest import ROOT, lamplighter_env, wait_for

pytestmark = pytest.mark.acceptance


@pytest.fixture
def start_worker(database_url, broker, sql, tmp_path):
    started = []

    def start(grace: float, app_module: str = "tests.worker_app", **env_extra: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")
        env = lamplighter_env(DATABASE_URL=database_url, LAMPLIGHTER_SHUTDOWN_GRACE=str(grace), **env_extra)
        proc = subprocess.Popen([sys.executable, "-m", "dramatiq", app_module, "--processes", "1",
                                 "--threads", "2", "--queues", "tests-slow", "--skip-logging"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: teardown reaches the forked worker
        started.append((proc, log))
        wait_for(lambda: sql("SELECT count(*) FROM lamplighter.workers") == [(1,)], timeout=30,
                 message="worker registered")
        return proc

    yield start
    for proc, log in started:
        if proc.poll() is None:
            # SIGKILL of dramatiq's main process alone would orphan its worker process.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _started(job_id) -> bool:
    return jobs.get(job_id).started_at is not None


def _stopping_visible(sql) -> bool:
    return sql("SELECT stopping FROM lamplighter.workers") == [(True,)]


def test_sigterm_finishes_short_jobs_hands_back_long_ones_and_exits_zero(start_worker, sql):
    proc = start_worker(grace=4)
    short = app.sleep.send(1.0, "short")
    long = app.sleep.send(120, "long")
    wait_for(lambda: _started(short.message_id) and _started(long.message_id), message="both jobs running")

    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)  # Heroku signals every process: a repeat at once is one request
    wait_for(lambda: _stopping_visible(sql), message="worker says it is stopping")
    late = app.sleep.send(0.1, "sent after SIGTERM")

    assert proc.wait(timeout=30) == 0
    elapsed = time.monotonic() - signalled
    assert 3.5 < elapsed < 15  # waited out the 4 s grace for the long job, not more

    finished = jobs.get(short.message_id)
    assert finished.state == "completed" and [a.outcome for a in finished.attempts] == ["completed"]

    handed = jobs.get(long.message_id)
    assert handed.state == "queued" and handed.worker_id is None
    assert handed.attempt == 0 and handed.attempts == ()  # no attempt consumed
    assert [e.event for e in handed.events] == ["handed_back"]

    untouched = jobs.get(late.message_id)
    assert untouched.state == "queued" and untouched.attempt == 0 and untouched.attempts == ()
    assert sql("SELECT count(*) FROM lamplighter.workers") == [(0,)]


def test_a_second_sigterm_after_a_second_ends_the_grace(start_worker, sql):
    proc = start_worker(grace=60)
    long = app.sleep.send(120, "long")
    wait_for(lambda: _started(long.message_id), message="job running")

    proc.send_signal(signal.SIGTERM)
    first = time.monotonic()
    wait_for(lambda: _stopping_visible(sql), message="worker says it is stopping")
    wait_for(lambda: time.monotonic() - first > 1.5, message="more than a second later")
    proc.send_signal(signal.SIGTERM)
    hurried = time.monotonic()

    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - hurried < 10  # far inside the 60 s grace
    handed = jobs.get(long.message_id)
    assert handed.state == "queued" and handed.attempt == 0
    assert [e.event for e in handed.events] == ["handed_back"]


def test_handed_back_job_runs_again_on_the_next_worker(start_worker, sql):
    proc = start_worker(grace=1)
    job = app.sleep.send(3, "resumable")
    wait_for(lambda: _started(job.message_id), message="job running")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert jobs.get(job.message_id).state == "queued"

    start_worker(grace=10)
    wait_for(lambda: jobs.get(job.message_id).state == "completed", timeout=30, message="ran on the next worker")
    done = jobs.get(job.message_id)
    assert done.attempt == 1 and [a.outcome for a in done.attempts] == ["completed"]


def test_sigterm_writes_the_queued_per_job_log_lines_before_the_worker_exits(start_worker, tmp_path):
    """Per-job lines are written by a writer thread in batches, and dramatiq's worker process
    leaves with os._exit right after its worker stops: the lines still queued must be written at
    the stop. This app's writer holds its batches for an hour, so only that can write the last
    job's line; at WARNING no later line (worker_stopped is INFO) carries it out either."""
    proc = start_worker(grace=4, app_module="tests.worker_app_held_logs", LAMPLIGHTER_LOG_LEVEL="WARNING",
                        LAMPLIGHTER_LOG_FORMAT="json")
    failing = [app.sleep.send("not a number", f"job {i}") for i in range(4)]  # TypeError: retried later
    wait_for(lambda: all(jobs.get(m.message_id).attempts for m in failing), message="every job failed once")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    lines = [json.loads(line) for line in (tmp_path / "worker-0.log").read_text().splitlines()
             if line.startswith("{")]
    retried = [line for line in lines if line["event"] == "job_failed_will_retry"]
    assert sorted(line["job_id"] for line in retried) == sorted(m.message_id for m in failing)
    assert {(line["actor"], line["attempt"], line["queue"], line["error_type"]) for line in retried} == {
        ("tests.sleep", 1, "tests-slow", "TypeError")}
