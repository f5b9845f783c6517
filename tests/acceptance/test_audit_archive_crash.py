"""Audit archival survives kill -9 at three different steps: a real process runs the archive,
stops at a step (after the archive file is written, after the month is detached, after its table
is dropped; each before it is recorded) and is killed with SIGKILL; the next process resumes.
In the end no row is lost, none is archived twice, and the manifest verifies."""
import os
import signal
import subprocess
import sys

from domain import audit_archive
from storage import files
from storage import settings as settings_module
from tests.audit_archive_runs import MONTH, archived_ids, seed
from tests.conftest import ROOT, lamplighter_env, use_database, wait_for


def run_until(stop_at: str, database_url: str, files_url: str, log) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", "tests.audit_archive_runs", stop_at], cwd=ROOT,
                            env=lamplighter_env(DATABASE_URL=database_url, LAMPLIGHTER_FILES_URL=files_url),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill_when_stopped(proc: subprocess.Popen, log, point: str) -> None:
    try:
        wait_for(lambda: f"stopped at {point}" in log.read_text() or proc.poll() is not None, timeout=60,
                 message=f"the archive process to stop at {point}")
        assert proc.poll() is None, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_archive_killed_at_three_steps_loses_nothing_and_archives_nothing_twice(database_url, sql, tmp_path):
    files_url = f"file://{tmp_path / 'store'}"
    (tmp_path / "store").mkdir()
    use_database(database_url, LAMPLIGHTER_FILES_URL=files_url)
    ids = seed(sql, 450)
    store = files.open_store(settings_module.get())
    data_key, manifest_key = audit_archive.keys(MONTH)

    def step():
        return sql("SELECT step FROM lamplighter.audit_archives WHERE month = %s", (MONTH,))

    def table():
        return sql("SELECT c.relispartition FROM pg_class c WHERE c.oid = to_regclass('lamplighter.audit_log_y2025m10')")

    # 1. Killed once the archive file is in the store, before its manifest and before any record.
    proc = run_until("data_written", database_url, files_url, tmp_path / "run1.log")
    kill_when_stopped(proc, tmp_path / "run1.log", "data_written")
    assert step() == [("started",)] and table() == [(True,)]
    assert archived_ids(store, data_key) == ids
    assert [f.key for f in store.list("audit/")] == [data_key]  # no manifest yet

    # More rows for the month arrive meanwhile: the resumed export must carry them.
    ids += seed(sql, 50, first_day=20)

    # 2. Resumed: exported again, verified, detached; killed before the detach is recorded.
    proc = run_until("detached", database_url, files_url, tmp_path / "run2.log")
    kill_when_stopped(proc, tmp_path / "run2.log", "detached")
    assert step() == [("verified",)] and table() == [(False,)]  # out of the log, still a table

    # 3. Resumed: the detach is not repeated, the table is dropped; killed before that is recorded.
    proc = run_until("dropped", database_url, files_url, tmp_path / "run3.log")
    kill_when_stopped(proc, tmp_path / "run3.log", "dropped")
    assert step() == [("detached",)] and table() == []

    # 4. Resumed to the end.
    finished = subprocess.run([sys.executable, "-m", "tests.audit_archive_runs", "none"], cwd=ROOT, timeout=120,
                              env=lamplighter_env(DATABASE_URL=database_url, LAMPLIGHTER_FILES_URL=files_url),
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert step() == [("done",)]

    assert sorted(ids) == archived_ids(store, data_key)  # every row, once
    manifest = audit_archive.verify(store, manifest_key)
    assert manifest["rows"] == 500 and sql("SELECT rows FROM lamplighter.audit_archives") == [(500,)]
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'audit.month_archived'") == [(1,)]
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'audit.month_dropped'") == [(1,)]
    assert sorted(f.key for f in store.list("audit/")) == sorted([data_key, manifest_key])
