"""The engine's own psycopg2 connections: one per consumer, finisher and heartbeat thread,
each reconnecting with backoff, and the rule that tells a lost connection from a refusal."""
from __future__ import annotations

import threading
import time

import psycopg2
import structlog

from storage import connection
from storage import settings as settings_module
from storage import queries as query_module
from storage.engine import codec

log = structlog.get_logger("lamplighter.broker")
# Reconnect backoff: 0.2 s doubling up to this, or half the lease if that is shorter. A worker
# that lost the server may take that long to be back after it returns: the rescue gives every
# worker that long, on top of the lease, after a server restart (presence.py).
MAX_RECONNECT_DELAY = 5.0


def reconnect_cap(lease_seconds: float) -> float:
    return min(MAX_RECONNECT_DELAY, lease_seconds / 2)


# For the connections that run the hot prepared statements (the claim, the finish). PostgreSQL
# plans a prepared statement anew on each call while it guesses a call-specific plan is cheaper
# (its first five calls, and after them whenever the generic plan looks costlier): for the claim,
# whose LIMIT is a parameter, it always guessed so, and planning took twice its execution (0.66 ms
# of planning, 0.3 ms running it, for 16 jobs). Their generic plans use the same indexes as the
# custom ones: at 20,000 and 1,000,000 queued jobs (EXPLAIN ANALYZE by hand) and behind a
# saturated concurrency key (tests/integration/test_engine_faults.py, the saturated-key test runs
# the generic plan too). Only with prepared statements: behind a transaction-mode pooler a
# session setting would leak to other clients.
GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


def hot_statement_setup(settings) -> str | None:
    """The ``setup`` of a connection that runs the claim or the finish (see GENERIC_PLANS)."""
    return GENERIC_PLANS if settings.prepared_statements else None

# SQLSTATEs that mean the connection is gone, besides class 08 (connection exception):
# admin_shutdown, crash_shutdown, cannot_connect_now.
_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})


def disconnected(exc: BaseException) -> bool:
    """A lost connection, whatever class psycopg2 gave it; anything else is a refusal by a live
    server, which a caller retries a bounded number of times at most.

    psycopg2 maps statement timeout (57014), deadlock (40P01), lock not available (55P03), disk
    full (53100), too many connections (53300) and program limits (54000) to subclasses of
    OperationalError too: the SQLSTATE decides, not the class. When the server goes away without
    a word (immediate shutdown, crash recovery, failover), the first statement on an idle
    connection fails with no SQLSTATE at all ("server closed the connection unexpectedly"), as an
    OperationalError or a bare DatabaseError; only the next use raises InterfaceError."""
    if isinstance(exc, (psycopg2.InterfaceError, query_module.StalePreparedStatement)):
        return True
    if not isinstance(exc, psycopg2.DatabaseError):
        return False
    code = exc.pgcode
    if code is None:
        return isinstance(exc, psycopg2.OperationalError) or type(exc) is psycopg2.DatabaseError
    return code.startswith("08") or code in _GONE_STATES


class ResilientConnection:
    """One psycopg2 connection that reconnects with backoff and logs an outage once."""

    def __init__(self, application_name: str, *, autocommit: bool = False, direct: bool = False,
                 setup: str | None = None):
        self.application_name = application_name
        self.setup = setup  # a statement run on each new connection (e.g. GENERIC_PLANS)
        self.autocommit = autocommit
        self.direct = direct  # to the server itself, past a pooler (LISTEN)
        self.conn = None
        self._down_since: float | None = None
        # When the connection last came back after it was lost (monotonic; None: never lost).
        self.back_since: float | None = None

    def get(self, stop: threading.Event | None = None):
        delay = 0.2
        while self.conn is None or self.conn.closed:
            try:
                self.conn = connection.raw_connection(self.application_name, direct=self.direct)
                self.conn.autocommit = self.autocommit
                if self.setup is not None:
                    self._run_setup()
                if self._down_since is not None:
                    self.back_since = time.monotonic()
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
                delay = min(delay * 2, reconnect_cap(settings_module.get().lease_timeout))
        return self.conn

    def _run_setup(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.setup)
            if not self.autocommit:
                self.conn.commit()
        except psycopg2.Error as exc:
            self.close()
            reason = codec.first_line(exc) or type(exc).__name__
            raise connection.DatabaseUnavailable(f"{self.application_name}: {self.setup}: {reason}") from None

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


class SharedConnection:
    """One ResilientConnection for several threads, one statement (or short exchange) at a time:
    ``with shared as conn:`` holds its lock. A worker process claims for every queue it consumes
    on one of these (a consumer thread per queue): claims are short, and a connection per queue
    cost a worker process one PostgreSQL session per queue whether the queue had jobs or not.
    Inside the block, :meth:`broken` drops the connection (the next user reconnects)."""

    def __init__(self, application_name: str, *, setup: str | None = None):
        self.resilient = ResilientConnection(application_name, autocommit=True, setup=setup)
        self.lock = threading.Lock()

    def __enter__(self):
        self.lock.acquire()
        try:
            return self.resilient.get()
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc_info) -> None:
        self.lock.release()

    def broken(self, exc: BaseException) -> None:
        """Within the block: the connection is lost (see ResilientConnection.broken)."""
        self.resilient.broken(exc)

    def close(self) -> None:
        with self.lock:
            self.resilient.close()

