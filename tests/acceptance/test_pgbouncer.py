"""A drain through a transaction-mode PgBouncer (the Debian package; `.ci/run` installs it) loses
nothing: workers connect through the pooler with LAMPLIGHTER_PREPARED_STATEMENTS=false and
LAMPLIGHTER_LISTEN=false (README "Deploy"), while the release step ran on the direct URL."""
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg2
import pytest

from tests import system_packages
from tests.conftest import ROOT, lamplighter_env, wait_for

pytestmark = pytest.mark.acceptance
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pooler:
    def __init__(self, database_url: str):
        parts = urlsplit(database_url)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or "127.0.0.1"
        self.user = parts.username or "postgres"
        self.dbname = parts.path.lstrip("/")
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lamplighter-pgbouncer-"))
        # PgBouncer refuses to run as root: it runs as the server's own OS user (the owner of
        # the Unix socket directory for the embedded server, `postgres` for the packaged one).
        self.os_user = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "postgres"
        server = f"host={host} port={parts.port or 5432} user={self.user}"
        (self.dir / "pgbouncer.ini").write_text(f"""
[databases]
{self.dbname} = {server} dbname={self.dbname}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        os.chmod(self.dir, 0o777)
        self.proc = subprocess.Popen([PGBOUNCER, *(["-u", self.os_user] if os.geteuid() == 0 else []),
                                      str(self.dir / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = urlunsplit(("postgresql", f"{self.user}@127.0.0.1:{self.port}", f"/{self.dbname}", "", ""))
        wait_for(self._answers, timeout=15, message="pgbouncer accepting connections")

    def _answers(self) -> bool:
        try:
            psycopg2.connect(self.url, connect_timeout=1).close()
            return True
        except psycopg2.OperationalError:
            assert self.proc.poll() is None, (self.dir / "pgbouncer.log").read_text(errors="replace")
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pooler(database_url):
    system_packages.ensure("pgbouncer", PGBOUNCER)
    started = Pooler(database_url)
    yield started
    started.stop()


@pytest.mark.parametrize("direct", [False, True], ids=["polling", "listen-direct"])
def test_a_drain_through_a_transaction_pooler_loses_nothing(database_url, pooler, broker, sql, worker_processes,
                                                           tmp_path, direct):
    """Without a direct URL the workers poll (LISTEN off); with LAMPLIGHTER_DIRECT_DATABASE_URL
    they LISTEN on the server itself, and the release step takes its session lock there."""
    import dramatiq

    env = {"LAMPLIGHTER_PREPARED_STATEMENTS": "false", "LAMPLIGHTER_LISTEN": "false"}
    if direct:
        env = {"LAMPLIGHTER_PREPARED_STATEMENTS": "false", "LAMPLIGHTER_DIRECT_DATABASE_URL": database_url}
        release = subprocess.run([sys.executable, "-m", "console", "migrate"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60, env=lamplighter_env(DATABASE_URL=pooler.url, **env))
        assert release.returncode == 0, release.stderr
        assert sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    executions = tmp_path / "executions.txt"
    messages = [dramatiq.Message(queue_name="tests-record", actor_name="tests.record", args=(str(executions),),
                                 kwargs={}, options={}) for _ in range(2000)]
    broker.enqueue_many(messages)
    workers = [worker_processes.start(name, pooler.url, sql, threads=8, queues=("tests-record",), **env)
               for name in ("a", "b")]

    def drained():
        return sql("SELECT count(*) FROM dramatiq.queue WHERE state <> 'completed'")[0][0] == 0

    wait_for(drained, timeout=120, interval=0.2, message="the drain through pgbouncer")
    assert sql("SELECT state, count(*) FROM dramatiq.queue GROUP BY 1") == [("completed", 2000)]
    assert sql("SELECT count(DISTINCT job_id), count(*) FROM lamplighter.job_history "
               "WHERE outcome = 'completed'") == [(2000, 2000)]
    ran = executions.read_text().split()
    assert len(ran) == 2000 and len(set(ran)) == 2000  # each once
    # Sessions that LISTEN exist only with the direct URL (a pooled connection is not a session).
    # A consumer LISTENs when it first waits for work: by the end of the drain, or a moment after.
    def listening():
        return sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND query LIKE 'LISTEN %%tests-record%%'")[0][0]

    if direct:
        wait_for(lambda: listening() == 2, timeout=10, message="both workers LISTENing on the direct URL")
    else:
        assert listening() == 0
    for worker in workers:
        assert worker.stop() == 0, worker.log_tail()


def test_connections_through_the_pooler_send_no_options_and_leave_the_timeout_to_the_role(database_url, pooler):
    """PgBouncer 1.18 refuses the `options` startup parameter: with the clock offset set (which
    was sent that way) every kind of connection still connects through it. The statement timeout
    is not SET through the pooler, where it would stay on the server connection for the next
    client; application_name, which PgBouncer tracks per client, still says who holds it."""
    from storage import connection
    from tests.conftest import use_database

    use_database(pooler.url, LAMPLIGHTER_PREPARED_STATEMENTS="false", LAMPLIGHTER_CLOCK_OFFSET="3600",
                 LAMPLIGHTER_STATEMENT_TIMEOUT_WEB="5")
    connection.set_process_kind("web")
    try:
        query = "SELECT current_setting('application_name'), current_setting('statement_timeout')"
        assert connection.init_database().execute_sql(query).fetchall() == [("lamplighter-web", "0")]
        raw = connection.raw_connection("finisher")
        try:
            cursor = raw.cursor()
            cursor.execute(query)
            assert cursor.fetchall() == [("lamplighter-web/finisher", "0")]
        finally:
            raw.close()
    finally:
        connection.set_process_kind("cli")
