"""The heartbeat thread: this worker's row in lamplighter.workers, and the rescue of jobs held
by workers that stopped beating."""
from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

import structlog

from storage import connection, jobs, workers
from storage.engine.connection import ResilientConnection, disconnected

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
VERSION = "0.1.0"

class Presence(threading.Thread):
    """The worker's heartbeat row, and the rescue of jobs held by workers that stopped beating.

    A thread of its own with its own connection: busy actors cannot starve it (they release
    the GIL on I/O, and a pure-CPU actor still yields every switch interval).
    """

    def __init__(self, broker: "LamplighterBroker", queues: list[str]):
        super().__init__(name="lamplighter-heartbeat", daemon=True)
        self.broker = broker
        self.queues = queues
        self.conn = ResilientConnection("lamplighter-heartbeat", autocommit=True)
        self.stop_event = threading.Event()
        self.stopping = False

    def register(self) -> None:
        conn = self.conn.get()
        workers.register(conn, worker_id=self.broker.worker_id, hostname=socket.gethostname(),
                         pid=os.getpid(), queues=self.queues, version=VERSION)
        workers.register_actors(conn, [
            {"name": actor.actor_name, "queue_name": actor.queue_name, "priority": actor.priority,
             "options": {k: v for k, v in actor.options.items() if isinstance(v, (int, float, str, bool))}}
            for actor in self.broker.actors.values()
        ])
        self.refresh_places(conn)

    def beat(self) -> None:
        conn = self.conn.get(self.stop_event)
        if not workers.heartbeat(conn, worker_id=self.broker.worker_id, stopping=self.stopping):
            log.error("worker_declared_dead", worker_id=self.broker.worker_id,
                      reason="heartbeat row was gone; jobs in flight were handed to other workers")
            self.register()
        rescue = workers.rescue_lost(conn, lease_seconds=self.broker.settings.lease_timeout)
        if rescue.jobs_rescued or rescue.workers_expired:
            log.warning("lost_jobs_rescued", workers_expired=rescue.workers_expired,
                        jobs_rescued=rescue.jobs_rescued, attempts_lost=rescue.attempts_lost)
        self.refresh_places(conn)
        freed = jobs.free_stray_slots(conn)
        if freed:
            log.warning("concurrency_slots_freed", slots=freed, reason="holder no longer running")

    def refresh_places(self, conn) -> None:
        me = self.broker.worker_id
        places = {}
        for queue_name, ids in workers.peers(conn, lease_seconds=self.broker.settings.lease_timeout).items():
            if me in ids:
                places[queue_name] = (ids.index(me), len(ids))
        self.broker.places = places

    def run(self) -> None:
        interval = self.broker.settings.heartbeat_interval
        while not self.stop_event.wait(interval):
            try:
                self.beat()
            except Exception as exc:
                if disconnected(exc):
                    self.conn.broken(exc)
                else:
                    log.exception("heartbeat_failed")

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)
        try:
            workers.unregister(self.conn.get(), worker_id=self.broker.worker_id)
        except Exception as exc:
            if not (disconnected(exc) or isinstance(exc, connection.DatabaseUnavailable)):
                raise
            # the row expires and any live worker cleans it up
        self.conn.close()

