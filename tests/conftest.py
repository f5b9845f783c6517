"""Test fixtures: a real PostgreSQL, never a mock of it.

With DATABASE_URL set, tests create their databases on that server; unset, they start an
embedded PostgreSQL once per session (in a throwaway data directory). A template database is
migrated once; each test that needs a database gets a fresh copy of it (CREATE DATABASE ...
TEMPLATE, tens of milliseconds), so tests never see each other's rows.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from storage import connection, embedded, schema
from storage import settings as settings_module

ROOT = Path(__file__).resolve().parent.parent

# Fixtures shared by several test modules that live in their own module: `cluster`, a throwaway
# PostgreSQL a test may stop or crash; `worker_processes`, dramatiq worker processes a test may
# pause, kill or stop; `s3_server`, an S3-compatible server on 127.0.0.1 for the file store;
# `enqueue_login`, a login role that holds only the lamplighter_enqueue grant; `api` and
# `web_process`, the web app on uvicorn (in a thread, or `lamplighter web` as a subprocess).
pytest_plugins = ["tests.pg_cluster", "tests.worker_processes", "tests.s3_server", "tests.sql_roles", "tests.web_api"]

# Fast timings for tests: every TTL and interval is a setting (see storage/settings.py).
FAST_ENV = {
    "LAMPLIGHTER_POLL_INTERVAL": "0.2",
    "LAMPLIGHTER_HEARTBEAT_INTERVAL": "0.5",
    "LAMPLIGHTER_LEASE_TIMEOUT": "2",
    "LAMPLIGHTER_SHUTDOWN_GRACE": "5",
    "LAMPLIGHTER_UNKNOWN_ACTOR_GRACE": "1",
    "LAMPLIGHTER_LOG_FORMAT": "json",
}


def wait_for(condition, *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``condition`` until it returns a truthy value or the deadline passes (no sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url():
    """An admin URL of the PostgreSQL server the tests use."""
    url = settings_module.normalize_database_url(os.environ.get("DATABASE_URL", ""))
    if url:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="lamplighter-tests-"))
    try:
        yield embedded.ensure_running(data_dir)
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _admin(server_url: str):
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def template_database(server_url):
    """A migrated database that every test database is copied from."""
    name = f"lamplighter_tpl_{os.getpid()}"
    admin = _admin(server_url)
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    use_database(url)
    schema.migrate()
    connection.reset()
    yield name
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


# The SSRF guard (actors/outbound_guard.py) refuses loopback: tests whose outbound calls go to a
# local server on 127.0.0.1 pass LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK.
LOOPBACK = "127.0.0.1,::1,localhost"


def use_database(url: str, **env) -> settings_module.Settings:
    """Point settings and connections of this process at ``url``."""
    connection.reset()
    settings = settings_module.configure(settings_module.load({**FAST_ENV, "DATABASE_URL": url, **env}))
    connection.init_database()
    return settings


@pytest.fixture
def database_url(server_url, template_database):
    """A fresh, migrated database for this test; dropped afterwards."""
    name = f"lamplighter_t_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    admin.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    url = with_database(server_url, name)
    use_database(url)
    yield url
    connection.reset()
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def sql(database_url):
    """Run SQL on the test database with its own autocommitting connection; returns rows."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True

    def run(text, params=None):
        cur = conn.cursor()
        cur.execute(text, params)
        return cur.fetchall() if cur.description else cur.rowcount

    yield run
    conn.close()


class DatabaseClock:
    """``lamplighter.now()`` as this thread's peewee session reads it, moved through the session's
    ``lamplighter.clock_offset`` instead of waiting. A :class:`storage.clock.Clock`, so code that
    takes a clock can be given the database's. Other connections keep the real time."""

    def now(self) -> datetime:
        return connection.init_database().execute_sql("SELECT lamplighter.now()").fetchone()[0]

    def timestamp(self) -> float:
        return self.now().timestamp()

    def set(self, moment: datetime) -> None:
        """From now on lamplighter.now() reads ``moment`` (plus the time since this call)."""
        db = connection.init_database()
        db.execute_sql("RESET lamplighter.clock_offset")
        real = db.execute_sql("SELECT now()").fetchone()[0]
        db.execute_sql(f"SET lamplighter.clock_offset = '{(moment - real).total_seconds():.6f}'")

    def advance(self, seconds: float) -> None:
        db = connection.init_database()
        [(offset,)] = db.execute_sql("SELECT coalesce(nullif(current_setting('lamplighter.clock_offset', true), ''), "
                                     "'0')::double precision").fetchall()
        db.execute_sql(f"SET lamplighter.clock_offset = '{offset + seconds:.6f}'")


@pytest.fixture
def db_clock(database_url):
    return DatabaseClock()


@pytest.fixture
def broker(database_url):
    """The actors package's broker pointed at this test's database with fast timings."""
    import actors

    actors.broker.settings = settings_module.get()
    actors.broker.stopping = False
    actors.broker.inflight.clear()
    actors.broker.consumers.clear()
    actors.broker.worker_threads = None
    actors.broker.reset_claim_connection()  # the consumers' shared connection, to this test's database
    # A live worker row, as a started worker has: claims take nothing for a worker without one.
    from storage import workers

    conn = connection.raw_connection("tests-register")
    try:
        conn.autocommit = True
        workers.register(conn, worker_id=actors.broker.worker_id, hostname="tests", pid=os.getpid(), queues=[],
                         version="tests")
    finally:
        conn.close()
    yield actors.broker
    actors.broker.inflight.clear()


@pytest.fixture
def run_worker(broker):
    """Start an in-process dramatiq Worker on the test database; stopped at teardown."""
    import dramatiq

    started = []

    def start(threads: int = 4, queues=None):
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100, queues=queues)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10_000)
        # dramatiq's Worker adds a middleware to the broker and never takes it out: on the
        # session's broker it would outlive the worker (a consumer added to a stopped worker on
        # the next declare_queue, and a "same type twice" warning per worker started since).
        broker.middleware[:] = [m for m in broker.middleware if getattr(m, "worker", None) is not worker]


def lamplighter_env(**extra: str) -> dict[str, str]:
    """Environment for a `lamplighter` subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LAMPLIGHTER_DATA_DIR")}
    env.update(FAST_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
