"""The deploy path as a platform runs it: on a fresh database, the Procfile's `release` line, then
`web`, `worker` and `scheduler`, each started through the container's entrypoint
(deploy/entrypoint.sh) with the Procfile's command exactly as written and $PORT set."""
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import psycopg2
import pytest
import requests

from tests.conftest import lamplighter_env, wait_for, with_database

pytestmark = pytest.mark.acceptance
ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fresh_database(server_url):
    """An empty database: no template, no migrations."""
    name = f"lamplighter_deploy_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield with_database(server_url, name)
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _query(url, text):
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(text)
            return cur.fetchall()
    finally:
        conn.close()


def _runs(pid: int, command: list[str]) -> bool:
    argv = psutil.Process(pid).cmdline()
    return len(argv) >= len(command) + 1 and Path(argv[1]).name == command[0] and argv[2:] == command[1:]


def _readyz(port) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_release_then_web_worker_and_scheduler_from_the_procfile(fresh_database, tmp_path):
    processes = procfile()
    assert set(processes) == {"release", "web", "worker", "scheduler"}
    port = _free_port()
    env = lamplighter_env(DATABASE_URL=fresh_database, PORT=str(port), LAMPLIGHTER_WORKER_PROCESSES="1",
                          LAMPLIGHTER_WORKER_THREADS="2",
                          PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    release = subprocess.run([str(ENTRYPOINT), "release"], env=env, capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    # The release step registered the actors: SQL enqueue works before any worker has started.
    [(job_id,)] = _query(fresh_database, "SELECT lamplighter.enqueue('maintenance.ping', "
                                         "'{\"note\": \"procfile\"}'::jsonb)")

    started = {}
    try:
        for name in ("web", "worker", "scheduler"):
            log = open(tmp_path / f"{name}.log", "wb")
            started[name] = subprocess.Popen([str(ENTRYPOINT), name], env=env, stdout=log, stderr=subprocess.STDOUT)
        for name, proc in started.items():
            # The entrypoint exec'd the Procfile's command: the process becomes that command (the
            # `lamplighter` script under its interpreter), not a shell waiting on it.
            command = processes[name].split()
            wait_for(lambda: _runs(proc.pid, command), timeout=20, interval=0.05,
                     message=f"{name}: the process runs {command}")
        wait_for(lambda: _readyz(port), timeout=60, interval=0.2, message="web /readyz on $PORT")
        wait_for(lambda: _query(fresh_database, f"SELECT state FROM dramatiq.queue WHERE message_id = '{job_id}'")
                 == [("completed",)], timeout=60, interval=0.2, message="the ping job completed by the worker")
        wait_for(lambda: _query(fresh_database, "SELECT count(*) FROM lamplighter.scheduler_lease "
                                                "WHERE holder IS NOT NULL")[0][0] == 1,
                 timeout=60, interval=0.2, message="the scheduler holds the leader lease")
        # pg_stat_activity tells which process kind, and which part of it, holds each connection.
        expected = {"lamplighter-web", "lamplighter-scheduler", "lamplighter-worker/heartbeat",
                    "lamplighter-worker/finisher"}
        wait_for(lambda: expected <= {name for (name,) in _query(
                     fresh_database, "SELECT application_name FROM pg_stat_activity "
                                     "WHERE datname = current_database()")},
                 timeout=30, interval=0.2, message=f"connections named {sorted(expected)}")
    finally:
        for proc in started.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=40) for name, proc in started.items()}
    assert codes == {"web": 0, "worker": 0, "scheduler": 0}, {n: (tmp_path / f"{n}.log").read_text()[-2000:]
                                                              for n in codes}


@pytest.mark.parametrize("argv, message", [
    ([], "name a process"),
    (["wroker"], "no process 'wroker' in the Procfile"),
    (["web;id"], "is not a process name"),
    (["web", "--port", "1"], "takes no arguments"),
])
def test_the_entrypoint_refuses_what_the_procfile_does_not_name(argv, message):
    done = subprocess.run([str(ENTRYPOINT), *argv], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
