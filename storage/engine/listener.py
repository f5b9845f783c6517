"""One LISTEN connection per worker process for every queue it consumes.

Each consumer used to hold a LISTEN connection of its own: a worker consuming the ten declared
queues held ten, next to the ten claim connections it then had (22 with its heartbeat and
finisher, before its threads'), a large share of a small plan's limit. The listener thread holds one session,
LISTENs on the channel of every queue a consumer subscribed, and hands each notification's
payload to the inboxes of that channel's consumers (storage/wakeups.py decides what a consumer
does with it). A consumer's wait is then a wait on its own Event, with the same timeout as
before: when this connection is down (an outage, a reconnect), consumers fall back to polling
and the thread reconnects with backoff and LISTENs again.

Threads: ``subscribers`` is changed by consumer threads and read by this one under ``lock``;
each run of the thread has its own connection and set of channels LISTENed on it (``listened``,
read by :meth:`Listener.listening`); an inbox (a deque) is appended to here and emptied by its
consumer.
"""
from __future__ import annotations

import select
import threading
from collections import deque

import psycopg2.extensions
import structlog

from storage.engine import codec
from storage.engine.connection import ResilientConnection, disconnected

log = structlog.get_logger("lamplighter.broker")
# How often the thread looks for new subscriptions while no notification comes.
IDLE_SECONDS = 0.2


class Inbox:
    """One consumer's share of the notifications on its queue's channel."""

    def __init__(self, channel: str):
        self.channel = channel
        self.payloads: deque[str] = deque()
        self.arrived = threading.Event()

    def drain(self) -> list[str]:
        self.arrived.clear()
        out = []
        while self.payloads:
            out.append(self.payloads.popleft())
        return out


class Listener:
    """The process's LISTEN session (see the module docstring); started by the first subscriber,
    ended when the last one leaves."""

    def __init__(self):
        self.lock = threading.Lock()
        self.subscribers: dict[str, list[Inbox]] = {}
        self.listened: set[str] = set()  # the channels the current run's session LISTENs on
        self.thread: threading.Thread | None = None
        self.stop_event = threading.Event()

    def subscribe(self, channel: str) -> Inbox:
        inbox = Inbox(channel)
        with self.lock:
            self.subscribers.setdefault(channel, []).append(inbox)
            if self.thread is None or not self.thread.is_alive():
                self.stop_event = threading.Event()
                self.thread = threading.Thread(target=self._run, args=(self.stop_event,), name="lamplighter-listener",
                                               daemon=True)
                self.thread.start()
        return inbox

    def unsubscribe(self, inbox: Inbox) -> None:
        with self.lock:
            inboxes = self.subscribers.get(inbox.channel, [])
            if inbox in inboxes:
                inboxes.remove(inbox)
            if not inboxes:
                self.subscribers.pop(inbox.channel, None)
            if not self.subscribers and self.thread is not None:
                self.stop_event.set()
                self.thread = None

    def listening(self, channel: str) -> bool:
        """Whether the session LISTENs on ``channel`` now (notifications on it reach its inboxes)."""
        return channel in self.listened

    def _run(self, stop: threading.Event) -> None:
        session = ResilientConnection("listen", autocommit=True, direct=True)
        listened: set[str] = set()
        with self.lock:
            if stop is self.stop_event:
                self.listened = listened
        while not stop.is_set():
            try:
                conn = session.get(stop)
                with self.lock:
                    wanted = set(self.subscribers)
                for channel in wanted - listened:
                    conn.cursor().execute(f"LISTEN {psycopg2.extensions.quote_ident(channel, conn)}")
                    listened.add(channel)
                # A channel whose last consumer left (a consumer restarted on another queue): the
                # server stops queueing its notifications for this session.
                for channel in listened - wanted:
                    conn.cursor().execute(f"UNLISTEN {psycopg2.extensions.quote_ident(channel, conn)}")
                    listened.discard(channel)
                if not conn.notifies:
                    select.select([conn], [], [], IDLE_SECONDS)
                conn.poll()
                notes = list(conn.notifies)
                conn.notifies.clear()
                if notes:
                    with self.lock:
                        for note in notes:
                            for inbox in self.subscribers.get(note.channel, ()):
                                inbox.payloads.append(note.payload)
                                inbox.arrived.set()
            except Exception as exc:
                if stop.is_set():
                    break
                if not disconnected(exc):
                    log.error("listener_failed", error=codec.first_line(exc) or type(exc).__name__,
                              reason="reconnecting; consumers poll meanwhile")
                listened.clear()
                session.broken(exc)
                stop.wait(0.2)
        listened.clear()
        session.close()
