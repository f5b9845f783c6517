"""The engine's own psycopg2 connections: one per consumer, finisher and heartbeat thread,
each reconnecting with backoff, and the rule that tells a lost connection from a refusal."""
from __future__ import annotations

import threading
import time

import psycopg2
import structlog

from storage import connection
from storage import queries as query_module

log = structlog.get_logger("lamplighter.broker")
_DISCONNECTS = (psycopg2.OperationalError, psycopg2.InterfaceError, query_module.StalePreparedStatement)


def disconnected(exc: BaseException) -> bool:
    """A lost connection, whatever class psycopg2 gave it. When the server goes away without a
    word (immediate shutdown, crash recovery after a backend died, failover), the first
    statement on a connection that was idle fails with a bare DatabaseError ("server closed the
    connection unexpectedly", no SQLSTATE) while the connection still reads as open; only the
    next use raises InterfaceError. A refusal by the server always has a SQLSTATE (and a
    subclass), so it is never taken for a disconnect and retried forever."""
    return isinstance(exc, _DISCONNECTS) or (type(exc) is psycopg2.DatabaseError and exc.pgcode is None)



class ResilientConnection:
    """One psycopg2 connection that reconnects with backoff and logs an outage once."""

    def __init__(self, application_name: str, *, autocommit: bool = False):
        self.application_name = application_name
        self.autocommit = autocommit
        self.conn = None
        self._down_since: float | None = None

    def get(self, stop: threading.Event | None = None):
        delay = 0.2
        while self.conn is None or self.conn.closed:
            try:
                self.conn = connection.raw_connection(self.application_name)
                self.conn.autocommit = self.autocommit
                if self._down_since is not None:
                    log.info("database_reconnected", component=self.application_name,
                             outage_seconds=round(time.monotonic() - self._down_since, 2))
                    self._down_since = None
            except connection.DatabaseUnavailable as exc:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("database_unavailable", component=self.application_name, error=str(exc))
                if stop is not None and stop.wait(delay):
                    raise
                if stop is None:
                    time.sleep(delay)
                delay = min(delay * 2, 5.0)
        return self.conn

    def broken(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("database_connection_lost", component=self.application_name,
                        error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # already broken: nothing left to release
                pass
            self.conn = None

