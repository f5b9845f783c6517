"""backups.create against a real PostgreSQL with the real pg_dump and pg_restore (chosen for
the server's version: 15 here, the embedded package's 18 for the embedded server), into a file
store on disk: made and verified by a restore with equal row counts, a corrupted copy failing
`backups verify`, a restore into a fresh database, and a dump cut off by SIGTERM that is retried
and never marked good."""
from __future__ import annotations

import threading
import uuid

import psutil
import psycopg2
import pytest

import actors
from domain import backups
from domain.outcomes import RetryLater
from storage import backups as backup_rows
from storage import dumps
from tests.cli_runs import run_cli
from tests.conftest import use_database, wait_for, with_database


@pytest.fixture
def store(database_url, tmp_path, monkeypatch):
    root = tmp_path / "files"
    root.mkdir()
    env = {"LAMPLIGHTER_FILES_URL": f"file://{root}", "DATABASE_URL": database_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    use_database(database_url, **env)
    return root


@pytest.fixture
def fresh_database(server_url):
    name = f"lamplighter_restore_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield with_database(server_url, name)
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def some_rows(sql):
    sql("INSERT INTO lamplighter.tenants (id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex')")
    sql("INSERT INTO lamplighter.users (email, display_name, role, tenant_id) VALUES "
        "('ada@acme.example', 'Ada', 'superadmin', 'acme')")
    actors.broker.send_many(actors.maintenance.ping, [{"note": f"n{i}"} for i in range(30)])


def test_a_backup_is_verified_a_corrupted_copy_fails_and_the_good_one_restores(
        store, database_url, sql, fresh_database, monkeypatch, capsys):
    some_rows(sql)
    result = actors.backups.create.fn()
    assert result["verified"] == 1 and result["rows"] >= 33
    [backup] = backup_rows.list_backups()
    assert backup.status == "verified" and backup.row_counts["dramatiq.queue"] == 30
    [(server_major,)] = sql("SELECT current_setting('server_version_num')::int / 10000")
    assert int(backup.pg_dump_version.split(".")[0]) >= server_major  # 18 for the embedded server
    stored = store / backup.file_key
    assert stored.read_bytes()[:5] == b"PGDMP"

    code, out, err = run_cli(monkeypatch, capsys, "backups", "list")
    assert code == 0 and out.startswith("ID") and f"{backup.id}   verified" in out

    code, out, err = run_cli(monkeypatch, capsys, "backups", "restore", str(backup.id), "--into", fresh_database)
    assert code == 0, err
    assert "row counts equal in 11 tables" in out
    assert dumps.counts_at(fresh_database, list(backup.row_counts)) == backup.row_counts
    code, out, err = run_cli(monkeypatch, capsys, "backups", "restore", str(backup.id), "--into", fresh_database)
    assert code == 1 and "not empty" in err
    code, out, err = run_cli(monkeypatch, capsys, "backups", "restore", str(backup.id), "--into", fresh_database,
                             "--force")
    assert code == 0, err

    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    code, out, err = run_cli(monkeypatch, capsys, "backups", "verify", str(backup.id))
    assert code == 1 and "failed verification: corrupted" in err and "does not match the recorded" in err
    assert backup_rows.get(backup.id).status == "unverified"
    code, _, err = run_cli(monkeypatch, capsys, "backups", "verify", "999")
    assert code == 1 and "no backup 999" in err
    with pytest.raises(SystemExit) as usage:
        run_cli(monkeypatch, capsys, "backups", "restore", "1", "--into", "mysql://x")
    assert usage.value.code == 2 and "--into: expected a postgresql:// URL" in capsys.readouterr().err


def dumps_data(process) -> bool:
    """A pg_dump that dumps (not one asked for its version), still running."""
    try:
        return process.name() == "pg_dump" and "--version" not in process.cmdline()
    except psutil.Error:  # gone, or a zombie waiting to be reaped
        return False


def test_a_dump_cut_off_by_sigterm_is_retried_and_never_marked_good(store, database_url, sql):
    some_rows(sql)
    holder = psycopg2.connect(database_url)  # pg_dump waits for this lock; the counts do not need it
    holder.cursor().execute("LOCK TABLE lamplighter.cache IN ACCESS EXCLUSIVE MODE")
    outcome = []

    def run():
        try:
            outcome.append(actors.backups.create.fn())
        except Exception as exc:  # the outcome is asserted below
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        dumping = wait_for(lambda: [p for p in psutil.Process().children(recursive=True) if dumps_data(p)],
                           message="pg_dump running")
        wait_for(lambda: sql("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                             "AND wait_event_type = 'Lock' AND datname = current_database()"),
                 message="pg_dump waiting for the lock")  # this test's pg_dump, not another test's
        dumping[0].terminate()  # SIGTERM, as a deploy sends it
        thread.join(timeout=30)
    finally:
        holder.close()
    [error] = outcome
    assert isinstance(error, RetryLater) and "SIGTERM" in str(error)  # the job is retried
    [failed] = backup_rows.list_backups()
    assert (failed.status, failed.file_key, failed.verified_at) == ("failed", None, None)
    assert "SIGTERM" in failed.error
    assert [p.name for p in store.rglob("*") if p.is_file()] == []  # nothing stored

    again = actors.backups.create.fn()  # the retry
    assert again["verified"] == 1
    assert [b.status for b in backup_rows.list_backups()] == ["verified", "failed"]


def test_pg_dump_is_chosen_for_the_server_version(database_url):
    conn = dumps.connect(database_url)
    try:
        major = dumps.server_major(conn)
    finally:
        conn.close()
    tool = dumps.find_tool("pg_dump", major)
    assert tool.major >= major and tool.path.is_file()
    with pytest.raises(dumps.ToolNotFound, match="pg_dump 99 or newer is needed"):
        dumps.find_tool("pg_dump", 99)
    with pytest.raises(dumps.ToolNotFound, match="LAMPLIGHTER_BACKUP_PG_BIN_DIR"):
        dumps.find_tool("pg_dump", major, configured_dir="/nonexistent")


def test_retention_keeps_the_newest_of_n_days_and_m_months():
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 10, 1, 4, 30, tzinfo=timezone.utc)
    made = [backup_rows.Backup(id=i, file_key=f"k{i}", status="verified", started_at=start + timedelta(hours=12 * i),
                           finished_at=None, verified_at=None, size_bytes=1, sha256="x", server_version="15",
                           pg_dump_version="15", row_counts={}, error=None) for i in range(130)]
    keep = backups.retained(made, keep_daily=3, keep_monthly=2)
    # Two a day: the newest of the last three days, and the newest of November and December.
    assert keep == {129, 127, 125, 121}
    assert made[121].started_at.month == 11 and made[129].started_at.month == 12


def test_a_configured_scratch_database_is_used_and_replaced_each_time(store, database_url, sql, fresh_database,
                                                                      server_url):
    # Managed PostgreSQL often refuses CREATE DATABASE: the restore check then uses the one given.
    use_database(database_url, LAMPLIGHTER_FILES_URL=f"file://{store}", LAMPLIGHTER_BACKUP_SCRATCH_URL=fresh_database)
    some_rows(sql)
    assert actors.backups.create.fn()["verified"] == 1
    sql("INSERT INTO lamplighter.tenants (id, name) VALUES ('initech', 'Initech')")
    assert actors.backups.create.fn()["verified"] == 1  # restored over the first check's objects
    assert dumps.counts_at(fresh_database, ["lamplighter.tenants"]) == {"lamplighter.tenants": 3}
    admin = psycopg2.connect(server_url)
    try:
        cur = admin.cursor()
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'lamplighter_restore_check_%'")
        assert cur.fetchone() == (0,)
    finally:
        admin.close()
