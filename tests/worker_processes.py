"""Worker processes as in production: `python -m dramatiq tests.worker_app`, one process of N
threads each, in a process group of its own, so that a test can pause (SIGSTOP), resume, kill -9
or stop all of it (dramatiq's main process and the worker process it forks). The fixture is
registered for every test by tests/conftest.py (``pytest_plugins``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, lamplighter_env, wait_for


class WorkerProcess:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name = name
        self.proc = proc
        self.log = log
        self.worker_id: str | None = None  # its row in lamplighter.workers
        self.pid: int | None = None  # the forked process that runs the jobs
        # When it was stopped and continued, time.time() like tests/executions.py's file.
        self.frozen: list[tuple[float, float]] = []
        self._stopped_at: float | None = None

    def pause(self) -> None:
        self._stopped_at = time.time()
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.frozen.append((self._stopped_at, time.time()))
        self._stopped_at = None

    @property
    def paused(self) -> bool:
        return self._stopped_at is not None

    def kill(self) -> None:
        """kill -9 of dramatiq's main process and its worker process at once (stopped or not)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group is gone already
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a platform stops a dyno: running jobs finish within the grace, the
        finisher writes what is left. Returns the exit code."""
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class WorkerProcesses:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def start(self, name: str, database_url: str, sql, *, threads: int = 8, queues=("tests-outage",),
              **env: str) -> WorkerProcess:
        """Start one and wait for its registration (``sql(text, params)`` runs on its database:
        the row that appears is its own, since processes are started one after the other)."""
        known = {row[0] for row in sql("SELECT id::text FROM lamplighter.workers")}
        log = self.tmp_path / f"worker-{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "tests.worker_app", "--processes", "1", "--threads", str(threads),
                 "--queues", *queues, "--skip-logging"],
                cwd=ROOT, env=lamplighter_env(DATABASE_URL=database_url, **env), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        worker = WorkerProcess(name, proc, log)
        self.started.append(worker)

        def registered():
            return [row for row in sql("SELECT id::text, pid FROM lamplighter.workers") if row[0] not in known]

        try:
            [(worker.worker_id, worker.pid)] = wait_for(registered, timeout=30, message=f"worker {name} registered")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker {name} log ---\n{worker.log_tail()}") from None
        return worker

    def by_pid(self) -> dict[int, WorkerProcess]:
        return {w.pid: w for w in self.started}

    def frozen(self) -> dict[int, list[tuple[float, float]]]:
        return {w.pid: list(w.frozen) for w in self.started}

    def describe(self) -> str:
        """Which process is which, and when each was stopped, for a failure message."""
        return ", ".join(f"{w.name} = pid {w.pid}" + "".join(f" (stopped {a:.3f} → {b:.3f})" for a, b in w.frozen)
                         for w in self.started)

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.name} (pid {w.pid}) log, tail ---\n{w.log_tail()}" for w in self.started)

    def cleanup(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()


@pytest.fixture
def worker_processes(tmp_path):
    """Starts `dramatiq tests.worker_app` processes; every one still running at teardown is
    killed with its group."""
    started = WorkerProcesses(tmp_path)
    yield started
    started.cleanup()
