"""A new user's path: `lamplighter up` on a fresh embedded cluster, a job enqueued by the CLI
reaches `completed`, Ctrl-C stops everything and leaves no process behind."""
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest
import requests

from tests.conftest import lamplighter_env, wait_for

pytestmark = pytest.mark.acceptance


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "console", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _ready(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_up_runs_a_job_end_to_end_and_stops_cleanly(tmp_path):
    port = _free_port()
    env = lamplighter_env(LAMPLIGHTER_DATA_DIR=str(tmp_path / "data"), PORT=str(port),
                          LAMPLIGHTER_WORKER_PROCESSES="1", LAMPLIGHTER_WORKER_THREADS="2")
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "console", "up"], env=env, stdout=log, stderr=subprocess.STDOUT,
                          cwd=tmp_path)
    try:
        wait_for(lambda: _ready(port), timeout=60, interval=0.2, message="web /readyz answers 200")
        wait_for(lambda: "worker_started" in (tmp_path / "up.log").read_text(), timeout=30,
                 message="worker started")
        enqueued = _cli(env, "enqueue", "maintenance.ping", "--args", '{"note": "acceptance"}')
        assert enqueued.returncode == 0, enqueued.stderr
        job_id = enqueued.stdout.strip()

        def completed():
            shown = _cli(env, "job", job_id, "--json")
            assert shown.returncode == 0, shown.stderr
            job = json.loads(shown.stdout)
            return job if job["state"] == "completed" else None

        job = wait_for(completed, timeout=30, interval=0.2, message="job completed")
        assert len(job["attempts"]) == 1
        assert job["attempts"][0]["outcome"] == "completed"
        assert job["attempts"][0]["duration_ms"] >= 0
        human = _cli(env, "job", job_id)
        assert "completed" in human.stdout and "duration_ms".upper() in human.stdout
        stats = _cli(env, "stats", "--json")
        [maintenance] = [q for q in json.loads(stats.stdout) if q["queue_name"] == "maintenance"]
        # The scheduler `up` starts may have run a scheduled maintenance job too (README "Scheduler").
        assert maintenance["completed"] >= 1
        pings = json.loads(_cli(env, "jobs", "--actor", "maintenance.ping", "--json").stdout)
        assert [(j["id"], j["state"]) for j in pings] == [(job_id, "completed")]

        family = psutil.Process(up.pid).children(recursive=True)
        postgres = [p for p in psutil.process_iter(["cmdline"])
                    if p.info["cmdline"] and str(tmp_path / "data") in " ".join(p.info["cmdline"])]
        assert postgres, "embedded PostgreSQL should run under the data directory"
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        leftovers = [p for p in family + postgres if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert leftovers == [], f"processes left behind: {leftovers}"
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


def _with_password(url: str, password: str) -> str:
    """The test server trusts every local connection: a password in the URL is accepted and ignored."""
    parts = urlsplit(url)
    user_info, host = parts.netloc.rsplit("@", 1) if "@" in parts.netloc else ("postgres", parts.netloc)
    return urlunsplit(parts._replace(netloc=f"{user_info.split(':', 1)[0]}:{password}@{host}"))


def test_up_on_a_terminal_reads_like_one_program(tmp_path, database_url):
    port = _free_port()
    env = lamplighter_env(DATABASE_URL=_with_password(database_url, "secretpw"), PORT=str(port),
                          LAMPLIGHTER_LOG_FORMAT="auto", LAMPLIGHTER_WORKER_PROCESSES="1",
                          LAMPLIGHTER_WORKER_THREADS="1")
    children_log = tmp_path / "children.log"
    terminal, terminal_side = pty.openpty()  # up's stderr is a terminal; its children write to a pipe
    with open(children_log, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "console", "up"], env=env, stdout=log, stderr=terminal_side,
                              cwd=tmp_path)
    os.close(terminal_side)
    own = bytearray()
    reader = threading.Thread(target=_drain, args=(terminal, own), daemon=True)
    reader.start()
    try:
        wait_for(lambda: _ready(port), timeout=60, interval=0.2, message="web /readyz answers 200")
        wait_for(lambda: "worker_started" in children_log.read_text(), timeout=30, message="worker started")
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    reader.join(timeout=10)
    lines = children_log.read_text().splitlines()
    [started] = [line for line in lines if "worker_started" in line]
    process, _, rendered = started.partition(" | ")
    assert process.strip() == "worker"
    assert "[info" in rendered  # structlog's console renderer, as `up`'s own lines
    assert not [line for line in lines if line.partition(" | ")[2].startswith("{")], "a child logged JSON"
    shown = ANSI.sub("", own.decode(errors="replace"))
    [first] = [line for line in shown.splitlines() if "lamplighter_up" in line]
    assert re.search(r"workers='?1 processes x 1 threads", first) and f"port={port}" in first
    assert re.search(r"database='?postgresql://postgres:", first) and "data_dir=" in first
    assert "claim_batch" not in first  # the rest is `lamplighter config`'s
    assert "secretpw" not in shown + children_log.read_text()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every process holding the terminal's other side has exited
            break
        if not chunk:
            break
        into.extend(chunk)
    os.close(fd)
