"""The heartbeat thread: this worker's row in lamplighter.workers, and the rescue of jobs held
by workers that stopped beating."""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING

import structlog

from storage import connection, jobs, workers
from storage.engine.connection import ResilientConnection, reconnect_cap, disconnected

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
VERSION = "0.1.0"


class Presence(threading.Thread):
    """The worker's heartbeat row, and the rescue of jobs held by workers that stopped beating.

    A thread of its own with its own connection: busy actors cannot starve it (they release
    the GIL on I/O, and a pure-CPU actor still yields every switch interval).

    Who may be declared dead, and by whom:

    * a worker rescues others only once its own view is current: connected, and beating, for a
      whole lease since its connection last came back or its beats last had a gap (it was
      paused). Otherwise the first worker back after an outage would declare every other dead;
    * nobody is declared dead within the lease plus the longest reconnect backoff of the
      server's (re)start (storage/sql/workers.sql, worker_rescue_lost);
    * a worker that finds its own row gone was declared dead anyway (paused, or cut off, past
      the lease): it fences itself (``broker.fence``) and registers under a new identity;
    * until a heartbeat has confirmed this worker within a lease, worker threads start nothing
      (:meth:`wait_fresh`, from the lifecycle middleware).
    """

    def __init__(self, broker: "LamplighterBroker", queues: list[str]):
        super().__init__(name="lamplighter-heartbeat", daemon=True)
        self.broker = broker
        self.queues = queues
        self.conn = ResilientConnection("heartbeat", autocommit=True)
        self.stop_event = threading.Event()
        self.nudge = threading.Event()  # a worker thread wants a heartbeat now
        self.stopping = False
        # When the database last confirmed this worker's row (monotonic), under `confirmed`.
        self.confirmed = threading.Condition()
        self.last_beat = time.monotonic()
        # Since when this worker's view of the others' heartbeats is current (see the class doc).
        self.steady_since = float("-inf")

    def register(self) -> None:
        conn = self.conn.get()
        # Actors first: once a worker's row is visible, lamplighter.enqueue knows every actor it runs
        # (a caller that waits for the worker row, as the tests do, may enqueue at once).
        workers.register_actors(conn, actor_rows(self.broker))
        workers.register(conn, worker_id=self.broker.worker_id, hostname=socket.gethostname(),
                         pid=os.getpid(), queues=self.queues, version=VERSION)
        self._confirmed()
        self.refresh_places(conn)

    def fresh(self) -> bool:
        return time.monotonic() - self.last_beat < self.broker.settings.lease_timeout

    def wait_fresh(self, give_up) -> None:
        """Until a heartbeat confirms this worker (or fences it), or ``give_up()``."""
        while not self.fresh() and not give_up() and not self.stop_event.is_set():
            self.nudge.set()
            with self.confirmed:
                self.confirmed.wait(0.2)

    def _confirmed(self) -> None:
        with self.confirmed:
            self.last_beat = time.monotonic()
            self.confirmed.notify_all()

    def beat(self) -> None:
        settings = self.broker.settings
        conn = self.conn.get(self.stop_event)
        now = time.monotonic()
        if now - self.last_beat > settings.lease_timeout:  # this worker did not beat for a lease
            self.steady_since = max(self.steady_since, now)
        if self.conn.back_since is not None:
            self.steady_since = max(self.steady_since, self.conn.back_since)
        if not workers.heartbeat(conn, worker_id=self.broker.worker_id, stopping=self.stopping):
            self.broker.fence()
            self.register()
        self._confirmed()
        if time.monotonic() - self.steady_since >= settings.lease_timeout:
            rescue = workers.rescue_lost(conn, lease_seconds=settings.lease_timeout,
                                         server_grace_seconds=settings.lease_timeout
                                         + reconnect_cap(settings.lease_timeout))
            if rescue.jobs_rescued or rescue.workers_expired:
                log.warning("lost_jobs_rescued", workers_expired=rescue.workers_expired,
                            jobs_rescued=rescue.jobs_rescued, attempts_lost=rescue.attempts_lost,
                            unstarted=rescue.unstarted_noted)
        self.reconcile(conn)
        self.refresh_places(conn)
        freed = jobs.free_stray_slots(conn)
        if freed:
            log.warning("concurrency_slots_freed", slots=freed, reason="holder no longer running")

    def reconcile(self, conn) -> None:
        """Rows this worker holds as running but neither runs nor has a write pending for (a
        finish the database kept refusing, a claim whose answer was lost) go back to the queue."""
        finisher = self.broker.finisher
        known = set(self.broker.inflight) | (set(finisher.unrecorded) if finisher is not None else set())
        found = workers.reconcile(conn, worker_id=self.broker.worker_id,
                                  lease_seconds=self.broker.settings.lease_timeout, known=sorted(known))
        if found.jobs_rescued:
            log.warning("stray_jobs_rescued", jobs_rescued=found.jobs_rescued, attempts_lost=found.attempts_lost,
                        reason="held as running by this worker, which no longer runs them")

    def refresh_places(self, conn) -> None:
        me = self.broker.worker_id
        places = {}
        for queue_name, ids in workers.peers(conn, lease_seconds=self.broker.settings.lease_timeout).items():
            if me in ids:
                places[queue_name] = (ids.index(me), len(ids))
        self.broker.places = places

    def run(self) -> None:
        interval = self.broker.settings.heartbeat_interval
        while not self.stop_event.is_set():
            self.nudge.wait(interval)
            self.nudge.clear()
            if self.stop_event.is_set():
                return
            try:
                self.beat()
            except Exception as exc:
                if disconnected(exc):
                    self.conn.broken(exc)
                else:
                    log.exception("heartbeat_failed")

    def stop(self) -> None:
        self.stop_event.set()
        self.nudge.set()
        self.join(timeout=10)
        try:
            workers.unregister(self.conn.get(), worker_id=self.broker.worker_id)
        except Exception as exc:
            if not (disconnected(exc) or isinstance(exc, connection.DatabaseUnavailable)):
                raise
            # the row expires and any live worker cleans it up
        self.conn.close()


def actor_rows(broker) -> list[dict]:
    """The broker's actors as lamplighter.actors rows: what lamplighter.enqueue() checks."""
    return [{"name": actor.actor_name, "queue_name": actor.queue_name, "priority": actor.priority,
             "options": {k: v for k, v in actor.options.items() if isinstance(v, (int, float, str, bool))}}
            for actor in broker.actors.values()]
