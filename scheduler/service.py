"""The `scheduler` process: one leader fires due schedules; standbys wait for its lease.

Every ``LAMPLIGHTER_SCHEDULER_POLL_INTERVAL`` seconds each scheduler process tries to take or
renew the lease row (``lamplighter.scheduler_lease``), whose expiry is measured by the
database's clock. The holder fires due schedules (scheduler/ticks.py); the others wait. A leader
that dies (kill -9) or loses its connection stops renewing, and a standby takes over once the
lease expires: within ``LAMPLIGHTER_SCHEDULER_LEASE_TTL`` + one poll (10 s + 1 s by default). On
SIGTERM the leader deletes its lease, so a standby takes over at its next poll.

Two schedulers that both believe they lead (a leader stalled past its TTL) are harmless: each
tick is locked, checked against the lease and keyed by (schedule, fire time).

The process only reads the schedules table: declarations are synced by the release step
(`lamplighter migrate`), never here, so an old and a new release running side by side during a
rolling deploy do not flip-flop the table. It never imports or runs job code.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid

import peewee
import psycopg2
import structlog

from scheduler import ticks
from storage import connection, schedules
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.scheduler")

DATABASE_ERRORS = (peewee.DatabaseError, peewee.InterfaceError, psycopg2.Error, connection.DatabaseUnavailable)
PRUNE_EVERY = 3600.0  # seconds between bounded prunes of old tick rows (leader only)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    def __init__(self, settings: settings_module.Settings, holder: str | None = None):
        self.settings = settings
        self.holder = holder or holder_id()
        self.leading = False
        self.announced_standby = False
        self.last_prune: float | None = None

    def step(self) -> list[ticks.TickResult]:
        """One poll: take or renew the lease; if leading, fire what is due."""
        lease = schedules.acquire_lease(self.holder, ttl_seconds=self.settings.scheduler_lease_ttl)
        if lease is not None and not self.leading:
            log.info("scheduler_leader", holder=self.holder, previous_holder=lease.previous_holder,
                     lease_expires_at=lease.expires_at.isoformat())
            self.announced_standby = False
        elif lease is None and self.leading:
            log.warning("scheduler_leadership_lost", holder=self.holder)
        elif lease is None and not self.announced_standby:
            current = schedules.current_lease()
            log.info("scheduler_standby", holder=self.holder, leader=current and current["holder"])
            self.announced_standby = True
        self.leading = lease is not None
        if not self.leading:
            return []
        fired = ticks.fire_due(self.holder)
        self._prune_if_due()
        return fired

    def _prune_if_due(self) -> None:
        now = time.monotonic()
        if self.last_prune is not None and now - self.last_prune < PRUNE_EVERY:
            return
        self.last_prune = now
        pruned = schedules.prune_ticks(retention_seconds=self.settings.scheduler_tick_retention)
        if pruned:
            log.info("schedule_ticks_pruned", rows=pruned)

    def resign(self) -> None:
        if self.leading:
            try:
                schedules.release_lease(self.holder)
                log.info("scheduler_resigned", holder=self.holder)
            except DATABASE_ERRORS as exc:
                log.warning("scheduler_resign_failed", error=_first_line(exc))
        self.leading = False


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _drop_connection() -> None:
    """Forget a connection that failed; peewee opens a new one on the next statement."""
    try:
        connection.database.close()
    except Exception:
        connection.database._state.reset()


def run(settings: settings_module.Settings) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    connection.set_process_kind("scheduler")
    connection.init_database()
    scheduler = Scheduler(settings)
    log.info("scheduler_started", holder=scheduler.holder, lease_ttl=settings.scheduler_lease_ttl,
             poll_interval=settings.scheduler_poll_interval)
    failing = False
    while not stop.is_set():
        try:
            scheduler.step()
            if failing:
                log.info("scheduler_database_back")
            failing = False
        except DATABASE_ERRORS as exc:
            if not failing:
                log.warning("scheduler_database_error", error=_first_line(exc))
            failing = True
            if scheduler.leading:
                log.warning("scheduler_leadership_lost", holder=scheduler.holder, reason="database error")
            scheduler.leading = False
            _drop_connection()
        stop.wait(settings.scheduler_poll_interval)
    scheduler.resign()
    log.info("scheduler_stopped", holder=scheduler.holder)
    return 0
