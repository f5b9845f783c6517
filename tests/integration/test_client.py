"""The client distribution (clients/python, `lamplighter_client`): enqueue over the SQL function
on the caller's connection, in the caller's transaction; installed alone into a fresh venv."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pytest

import lamplighter_client
from lamplighter_client import enqueue
from tests.conftest import ROOT

CLIENT = ROOT / "clients" / "python"


@pytest.fixture
def registered(sql):
    sql("INSERT INTO lamplighter.actors (name, queue_name, options) "
        "VALUES ('maintenance.ping', 'maintenance', '{\"max_retries\": 3}')")


def test_client_comes_from_the_distribution_not_the_project():
    assert lamplighter_client.__file__.startswith(str(CLIENT))


def test_enqueue_joins_the_callers_transaction(registered, sql, enqueue_login):
    conn = enqueue_login.connect(autocommit=False)
    try:
        dropped = enqueue(conn, "maintenance.ping", note="rolled back")
        conn.rollback()
        kept = enqueue(conn, "maintenance.ping", note="committed", tenant_id="family-7", correlation_id="req-1")
        assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]  # not visible before COMMIT
        conn.commit()
    finally:
        conn.close()
    assert sql("SELECT message_id::text, tenant_id, correlation_id, enqueued_by, message -> 'kwargs' "
               "FROM dramatiq.queue") == [(kept, "family-7", "req-1", f"sql:{enqueue_login.role}",
                                           {"note": "committed"})]
    assert dropped != kept


def test_enqueue_passes_every_option(registered, sql, enqueue_login):
    eta = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=3)
    conn = enqueue_login.connect()
    try:
        at_eta = enqueue(conn, "maintenance.ping", "positional", 2, eta=eta, queue="other", priority=9)
        delayed = enqueue(conn, "maintenance.ping", delay=timedelta(minutes=5, microseconds=7))
        unique = enqueue(conn, "maintenance.ping", unique_key="u")
        same = enqueue(conn, "maintenance.ping", unique_key="u")
    finally:
        conn.close()
    rows = dict((r[0], r[1:]) for r in sql(
        "SELECT message_id::text, queue_name, priority, available_at - enqueued_at, available_at, "
        "message -> 'args' FROM dramatiq.queue"))
    assert rows[at_eta][0:2] == ("other", 9) and rows[at_eta][3] == eta and rows[at_eta][4] == ["positional", 2]
    assert rows[delayed][2] == timedelta(minutes=5, microseconds=7)
    assert same == unique


def test_enqueue_reads_rows_of_any_shape(registered, database_url):
    conn = psycopg2.connect(database_url, cursor_factory=psycopg2.extras.RealDictCursor)
    try:
        job_id = enqueue(conn, "maintenance.ping")
        conn.commit()
    finally:
        conn.close()
    assert len(job_id) == 36


@pytest.mark.parametrize("call, error, match", [
    (lambda c: enqueue(c, "", 1), TypeError, "non-empty string"),
    (lambda c: enqueue(c, "maintenance.ping", 1, note="x"), ValueError, "not both"),
    (lambda c: enqueue(c, "maintenance.ping", object()), TypeError, "JSON values"),
    (lambda c: enqueue(c, "maintenance.ping", delay=300), TypeError, "timedelta"),
    (lambda c: enqueue(c, "maintenance.ping", delay=timedelta(seconds=-1)), ValueError, "negative"),
    (lambda c: enqueue(c, "maintenance.ping", eta=datetime(2030, 1, 1)), ValueError, "timezone-aware"),
    (lambda c: enqueue(c, "maintenance.ping", delay=timedelta(1), eta=datetime.now(timezone.utc)),
     ValueError, "delay or eta"),
    (lambda c: enqueue(c, "maintenance.ping", priority="5"), TypeError, "priority"),
    (lambda c: enqueue(c, "maintenance.ping", tenant_id=7), TypeError, "tenant_id"),
])
def test_bad_arguments_are_refused_before_the_connection_is_touched(call, error, match):
    class Untouchable:
        def cursor(self):
            raise AssertionError("the connection was used")

    with pytest.raises(error, match=match):
        call(Untouchable())


def test_database_errors_are_the_drivers_own(registered, enqueue_login):
    conn = enqueue_login.connect()
    try:
        with pytest.raises(psycopg2.errors.InvalidParameterValue, match="unknown actor no.such.actor"):
            enqueue(conn, "no.such.actor")
    finally:
        conn.close()


def test_client_installed_alone_into_a_fresh_venv_enqueues_as_the_restricted_role(registered, sql, enqueue_login,
                                                                                  tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL")}
    # Built from a copy: pip's build would leave build/ and *.egg-info in the checkout.
    source = shutil.copytree(CLIENT, tmp_path / "client",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source), "psycopg[binary]"],
                   check=True, env=env, timeout=300)
    script = textwrap.dedent("""
        import importlib.util, sys
        import psycopg
        from lamplighter_client import enqueue
        assert not any(importlib.util.find_spec(m) for m in ("dramatiq", "peewee", "psycopg2", "storage", "actors"))
        with psycopg.connect(sys.argv[1]) as conn:
            print(enqueue(conn, "maintenance.ping", note="from a fresh venv", correlation_id="venv-1"))
    """)
    done = subprocess.run([str(python), "-c", script, enqueue_login.url], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert sql("SELECT correlation_id, enqueued_by, message -> 'kwargs' FROM dramatiq.queue "
               "WHERE message_id = %s", (job_id,)) == [("venv-1", f"sql:{enqueue_login.role}",
                                                          {"note": "from a fresh venv"})]
