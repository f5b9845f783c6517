"""Waiting on LISTEN/NOTIFY for dramatiq's results and rate-limiter events: one listening
connection per process and database, one thread, any number of waiters.

A waiter registers the (channel, key) it waits for, then checks the database, then waits on its
event: a notification that arrives between the check and the wait is not missed, because the
LISTEN was in force before the check (:meth:`Listener.watching` waits for it). When the listening
connection is lost, every waiter is woken to check again, and the thread reconnects.

Channels (each payload is a key): ``lamplighter.results`` (migration 0017's trigger on
lamplighter.job_results) and ``lamplighter.rate_limits`` (storage/rate_limits.py, wait_notify).
"""
from __future__ import annotations

import select
import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg2
import structlog

from storage import connection

log = structlog.get_logger("lamplighter.listener")
CHANNELS = ("lamplighter.results", "lamplighter.rate_limits")
RECONNECT_PAUSE = 0.5


class Listener(threading.Thread):
    def __init__(self, url: str):
        super().__init__(name="lamplighter-listener", daemon=True)
        self.url = url
        self.lock = threading.Lock()
        self.waiters: dict[tuple[str, str], set[threading.Event]] = {}
        self.ready = threading.Event()  # LISTEN is in force on a live connection
        self.wanted = threading.Event()  # someone waits (or waited): keep a connection
        self.stopping = threading.Event()

    @contextmanager
    def watching(self, channel: str, keys: list[str], *, timeout: float = 10.0) -> Iterator[threading.Event]:
        """An event set when one of ``keys`` is announced on ``channel`` (or the connection was
        lost: check again)."""
        event = threading.Event()
        with self.lock:
            for key in keys:
                self.waiters.setdefault((channel, key), set()).add(event)
            self.wanted.set()
        try:
            if not self.ready.wait(timeout):
                raise connection.DatabaseUnavailable("the LISTEN connection could not be opened")
            yield event
        finally:
            with self.lock:
                for key in keys:
                    waiting = self.waiters.get((channel, key))
                    if waiting is not None:
                        waiting.discard(event)
                        if not waiting:
                            del self.waiters[(channel, key)]

    def _wake(self, channel: str, key: str) -> None:
        with self.lock:
            events = list(self.waiters.get((channel, key), ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self.lock:
            events = [e for waiting in self.waiters.values() for e in waiting]
        for event in events:
            event.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            # Connected while someone waits; a connection lost with nobody waiting (the database
            # was dropped, a restart) is opened again only when the next waiter comes.
            self.wanted.wait()
            if self.stopping.is_set():
                return
            conn, error = None, None
            try:
                dsn, params = connection.split_url(self.url)
                conn = psycopg2.connect(dsn, **{**connection.connect_kwargs(connection.application_name("listener")), **params})
                conn.autocommit = True
                cur = conn.cursor()
                for channel in CHANNELS:
                    cur.execute(f'LISTEN "{channel}"')
                self.ready.set()
                self._wake_all()  # whatever was announced while no LISTEN was in force: check again
                while not self.stopping.is_set():
                    if select.select([conn], [], [], 1.0)[0]:
                        conn.poll()
                        while conn.notifies:
                            notice = conn.notifies.pop(0)
                            self._wake(notice.channel, notice.payload)
            except Exception as exc:  # lost connection, server restart: reconnect
                error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            finally:
                self.ready.clear()
                self._wake_all()
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            with self.lock:
                if not self.waiters:
                    self.wanted.clear()
                    continue
            log.warning("listener_reconnecting", error=error)
            self.stopping.wait(RECONNECT_PAUSE)

    def stop(self) -> None:
        self.stopping.set()
        self.wanted.set()


_listeners: dict[str, Listener] = {}
_create_lock = threading.Lock()


def get() -> Listener:
    """This process's listener for the current database (started on first use). A process
    uses one database at a time: a listener for another one is stopped."""
    url = connection.database_url()
    with _create_lock:
        for other in [u for u in _listeners if u != url]:
            _listeners.pop(other).stop()
        listener = _listeners.get(url)
        if listener is None or not listener.is_alive():
            listener = _listeners[url] = Listener(url)
            listener.start()
        return listener


def stop_all() -> None:
    with _create_lock:
        for listener in _listeners.values():
            listener.stop()
        _listeners.clear()
