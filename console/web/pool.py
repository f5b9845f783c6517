"""The web process's database pool: at most ``size`` connections for request work.

Storage functions use peewee's connection, one per thread (storage/connection.py). The pool is
``size`` threads, each keeping its own connection from request to request; a request's database
work runs on one of them (:meth:`DatabasePool.run`), and a request that finds every one busy
waits up to ``timeout`` seconds, then gets a 503. A connection that fails is closed, and the
next call on its thread connects afresh. A kept connection the server has closed meanwhile
(``pg_terminate_backend``, a restart, an idle timeout) is replaced before the request runs on
it, not found dead by the request: the server's goodbye makes its idle socket readable. A statement cancelled by the web's statement timeout
(LAMPLIGHTER_STATEMENT_TIMEOUT_WEB) leaves its connection usable and becomes
``connection.StatementTimeout``, which the app answers with a 503 that says so.

:meth:`DatabasePool.read` is for the dashboard's read-only pages: their storage reads go to the
read replica when LAMPLIGHTER_READ_DATABASE_URL names one (each thread then keeps a connection
to both).
"""
from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import peewee
import psycopg2

from storage import connection

# Failures of the connection itself (not of a statement): the thread's connection is replaced.
CONNECTION_ERRORS = (peewee.OperationalError, peewee.InterfaceError, psycopg2.OperationalError,
                     psycopg2.InterfaceError, connection.DatabaseUnavailable)


class PoolExhausted(RuntimeError):
    """Every connection stayed busy for the pool's timeout."""


class DatabasePool:
    def __init__(self, size: int, timeout: float):
        self.size = size
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="web-db")
        self._slots: asyncio.Semaphore | None = None
        self._connections: dict[tuple[int, int], Any] = {}  # by (thread, database): what each keeps

    async def run(self, fn: Callable[..., Any], /, *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` on one of the pool's connections."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except asyncio.TimeoutError:
            raise PoolExhausted(f"all {self.size} database connections stayed busy for {self.timeout:g} s") from None
        try:
            call = functools.partial(self._call, fn, args, kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            self._slots.release()

    async def read(self, fn: Callable[..., Any], /, *args, **kwargs) -> Any:
        """:meth:`run` for a page that writes nothing: on the read replica when one is set."""
        return await self.run(connection.on_replica, fn, *args, **kwargs)

    def _call(self, fn, args, kwargs):
        connection.drop_closed_connections()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            # psycopg2 makes a cancelled statement an OperationalError, like a lost connection.
            if connection.statement_timed_out(exc):
                raise connection.StatementTimeout(connection.timeout_message()) from None
            if isinstance(exc, CONNECTION_ERRORS):
                _close_this_threads_connection()
            raise
        finally:
            for db in (connection.database, connection.read_database):
                if not db.deferred and not db.is_closed():
                    self._connections[threading.get_ident(), id(db)] = db.connection()

    def close(self) -> None:
        """Stop the threads (waiting for work in progress), then close the connections they kept."""
        self._executor.shutdown(wait=True)
        for conn in self._connections.values():
            try:
                conn.close()
            except psycopg2.Error:
                pass  # broken already
        self._connections.clear()


def _close_this_threads_connection() -> None:
    for db in (connection.database, connection.read_database):  # which one failed is not known here
        if db.deferred:
            continue
        try:
            db.close()
        except (peewee.PeeweeException, psycopg2.Error):
            pass  # already broken: closing it was only to make the next call connect afresh
