"""Zero-downtime deploys: migrations expand first and contract in a later release, so the previous
release's workers keep working on the new schema while the new release rolls out. The code of the
parent of the newest commit that added a migration (the release before the latest schema
change) drains jobs on a database migrated by this release's code: none lost, each run once."""
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, lamplighter_env, wait_for

pytestmark = pytest.mark.acceptance


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, timeout=60).stdout


def previous_release(into: Path) -> str:
    """Unpack the code before the newest schema change into ``into``; return its commit."""
    # The newest commit that added a migration: one that edits a migration not yet released
    # (its own follow-up) is not a schema change between releases.
    newest = _git("log", "-1", "--first-parent", "--diff-filter=A", "--format=%H", "--",
                  "storage/migrations").decode().strip()
    assert newest, "no commit touches storage/migrations"
    parent = _git("rev-parse", f"{newest}^1").decode().strip()
    with tarfile.open(fileobj=io.BytesIO(_git("archive", "--format=tar", parent)), mode="r") as tar:
        tar.extractall(into, filter="data")
    return parent


def test_the_previous_releases_worker_drains_on_the_new_schema(database_url, broker, sql, tmp_path):
    import dramatiq

    old = tmp_path / "previous"
    commit = previous_release(old)
    old_migrations = {p.name for p in (old / "storage" / "migrations").glob("*.sql")}
    new_migrations = {p.name for p in (ROOT / "storage" / "migrations").glob("*.sql")}
    assert old_migrations < new_migrations, f"{commit[:10]} is not before the newest schema change"

    broker.enqueue_many([dramatiq.Message(queue_name="maintenance", actor_name="maintenance.ping", args=(),
                                          kwargs={"note": f"rolling deploy {i}"}, options={})
                         for i in range(500)])
    log = open(tmp_path / "previous-worker.log", "wb")
    # The previous release's code, first on sys.path (cwd), over this venv's packages.
    worker = subprocess.Popen([sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "4",
                               "--queues", "maintenance"], cwd=old, stdout=log, stderr=subprocess.STDOUT,
                              env=lamplighter_env(DATABASE_URL=database_url, PYTHONPATH=str(old)))
    try:
        wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE state <> 'completed'") == [(0,)],
                 timeout=90, interval=0.2, message=f"the drain by {commit[:10]}'s worker")
        ran = sql("SELECT count(DISTINCT h.job_id), count(*) FROM lamplighter.job_history h "
                  "JOIN lamplighter.workers w ON w.id = h.worker_id WHERE h.outcome = 'completed'")
    finally:
        worker.terminate()
        code = worker.wait(timeout=40)
    assert ran == [(500, 500)], (tmp_path / "previous-worker.log").read_text()[-3000:]
    assert code == 0
