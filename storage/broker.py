"""Lamplighter's broker: dramatiq-pg's table and message format, a claim path that scales.

Built on ``dramatiq_pg.PostgresBroker`` (same ``dramatiq.queue`` table, same message JSON, so a
service with only dramatiq + dramatiq-pg installed can enqueue), with its consumer replaced:

* claims in batches with ``FOR UPDATE SKIP LOCKED`` (no advisory lock per message: stock
  dramatiq-pg fills PostgreSQL's shared lock table on a backlog of ~12k messages);
* delays wait in the table (``available_at``), not in worker memory;
* a claimed job carries the worker's id; one heartbeat row per worker; any live worker hands
  the jobs of a dead one back to the queue;
* an attempt counts when the actor starts; attempt starts, finishes and history rows from all
  worker threads are grouped into one commit by the :class:`Finisher`;
* how an attempt ended (retry at a time, dead, cancelled, handed back) is told by the actors'
  Retries middleware through :meth:`LamplighterBroker.settle`;
* unique keys and concurrency limits live in the enqueue and claim SQL (storage/sql/jobs.sql);
* graceful shutdown: on SIGTERM the worker stops claiming at once, lets running jobs finish
  within the grace, then hands the rest back without consuming their attempt.

Delivery is at-least-once. A job that finished less than ``finish_flush_interval`` before the
process died was not yet recorded as finished and runs again; history shows both runs.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import logging
import os
import select
import signal
import socket
import threading
import time
import traceback as traceback_module
import uuid
import ctypes
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

import dramatiq
import psycopg2
import psycopg2.extensions
import structlog
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import current_millis
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError, Shutdown, SkipMessage
from dramatiq_pg import PostgresBroker

from storage import clock as clock_module
from storage import connection, jobs, logs, wakeups, workers
from storage import settings as settings_module
from storage import queries as query_module
from storage.queries import queries

log = structlog.get_logger("lamplighter.broker")
# structlog's stdlib logger runs its processor chain before dropping a filtered line: the hot
# path asks the stdlib logger (a cached level check) first.
_stdlib_log = logging.getLogger("lamplighter.broker")
SQL = queries("jobs")
VERSION = "0.1.0"

# Who is enqueueing, recorded in the job row's enqueued_by: set by the CLI ("cli:user@host"),
# the scheduler ("cron:<key>@<time>"), the API ("api:<token>"); inside a job, "job:<id>".
enqueued_by: ContextVar[str | None] = ContextVar("enqueued_by", default=None)
# The job this thread is running, if any: a job that enqueues its own successor under the same
# unique key gives the key up to it; actors read it to poll for a cancel request.
current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)

# Options a sender may give (send_with_options) that become job columns, not message options.
COLUMN_OPTIONS = ("unique_key", "unique_states", "unique_on_conflict", "concurrency_key", "concurrency_limit",
                  "tenant_id", "correlation_id", "priority")
# Of those, the ones an actor may declare as its defaults.
ACTOR_COLUMN_OPTIONS = ("unique_states", "unique_on_conflict", "concurrency_key", "concurrency_limit")
# Seconds between two SIGTERM/SIGINT that are still one stop request (Heroku signals every
# process of a dyno, and dramatiq's main process forwards what it receives).
SIGNAL_REPEAT_WINDOW = 1.0
# A lost prepared statement is handled like a lost connection: reconnect, prepare again, retry.
_UNSET = object()
# Finisher items that end this worker's hold on a job (a "start" does not).
ENDING_KINDS = frozenset({"finish", "release", "handback", "reject", "defer"})
_DISCONNECTS = (psycopg2.OperationalError, psycopg2.InterfaceError, query_module.StalePreparedStatement)


def _disconnected(exc: BaseException) -> bool:
    """A lost connection, whatever class psycopg2 gave it. When the server goes away without a
    word (immediate shutdown, crash recovery after a backend died, failover), the first
    statement on a connection that was idle fails with a bare DatabaseError ("server closed the
    connection unexpectedly", no SQLSTATE) while the connection still reads as open; only the
    next use raises InterfaceError. A refusal by the server always has a SQLSTATE (and a
    subclass), so it is never taken for a disconnect and retried forever."""
    return isinstance(exc, _DISCONNECTS) or (type(exc) is psycopg2.DatabaseError and exc.pgcode is None)


class PayloadError(ValueError):
    """A message cannot be sent: not JSON-serialisable, too large, or bad options."""


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_message(message: Message, max_bytes: int) -> str:
    """dramatiq's message as compact JSON text, checked at send time rather than in the worker.

    JSON policy: only JSON types (str, int, float, bool, None, list, dict with str keys).
    datetime, UUID and Decimal are refused here with a clear message; send ``.isoformat()``,
    ``str(uuid)`` or ``str(decimal)``.
    """
    return checked_payload(message.actor_name, message.asdict(), max_bytes)


def checked_payload(actor_name: str, data: Any, max_bytes: int) -> str:
    """Compact JSON of ``data``, refused with a PayloadError if ``data`` is not JSON or the
    text is over ``max_bytes``."""
    try:
        text = _COMPACT_JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"cannot send {actor_name}: arguments must be JSON (str, int, float, bool, None, "
            f"list, dict); {exc}. Convert datetimes with .isoformat(), UUIDs and Decimals with str()."
        ) from None
    if len(text) * 4 > max_bytes and len(text.encode()) > max_bytes:  # UTF-8: at most 4 bytes a char
        raise PayloadError(
            f"cannot send {actor_name}: message is {len(text.encode())} bytes, over the "
            f"{max_bytes}-byte limit (LAMPLIGHTER_MAX_PAYLOAD_BYTES); store large data in a table "
            "and pass its id"
        )
    return text


def _new_message_ids(count: int) -> list[str]:
    """``count`` time-ordered (version 7) UUIDs as text: the current millisecond, then random
    bits from one read of the OS's random source (a third of the cost of str(uuid.uuid4())
    each, which dominated bulk sends). A bulk batch's ids all land at the right edge of the
    primary key instead of on a random leaf page each: bulk sends 59k -> 68k jobs/s here."""
    raw = os.urandom(16 * count).hex()
    now = f"{time.time_ns() // 1_000_000:012x}"
    stamp = f"{now[:8]}-{now[8:]}-7"
    ids = []
    for i in range(0, 32 * count, 32):
        h = raw[i:i + 32]
        ids.append(f"{stamp}{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return ids


def args_digest(message_data: dict) -> str:
    payload = json.dumps([message_data.get("args"), message_data.get("kwargs")], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Claim:
    """A job this process has claimed and not yet finished."""

    message_id: str
    queue_name: str
    actor_name: str
    attempt: int  # attempts started before this claim
    tenant_id: str | None
    digest: str
    started_at: float | None = None  # epoch seconds, by the broker's clock
    started_mono: float | None = None
    retry_delay_ms: int | None = None
    result: Any = None
    verdict: str | None = None  # dead | cancelled | handback, from the Retries middleware
    thread: threading.Thread | None = None

    @property
    def current_attempt(self) -> int:
        return self.attempt + 1


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


class Finisher(threading.Thread):
    """Groups attempt starts, finishes (with history rows) and hand-backs from every worker
    thread into one transaction every ``flush_interval`` seconds.

    Every statement names (job, attempt, worker), so replaying a batch after a lost connection
    or an unknown COMMIT outcome changes nothing that was already applied.
    """

    def __init__(self, broker: "LamplighterBroker"):
        super().__init__(name="lamplighter-finisher", daemon=True)
        self.broker = broker
        # A deque, not a queue.Queue: appending is one atomic C call, and the finisher is woken
        # only when it is parked (an empty buffer), not once per item. At thousands of jobs a
        # second, a wake-up per start and per finish was the largest single cost of a thread.
        self.items: deque = deque()
        self.wake = threading.Event()
        self.parked = False
        self.conn = ResilientConnection("lamplighter-finisher", autocommit=True)
        self.stopping = threading.Event()
        # Jobs that ran but whose finish is not committed yet. Consumers stop claiming while
        # there are two windows of them: that bounds what a kill -9 runs again.
        self.unrecorded: set[str] = set()

    def submit(self, kind: str, payload: dict, *, wait: bool = False) -> None:
        done = threading.Event() if wait else None
        if kind in ENDING_KINDS:
            self.unrecorded.add(payload["message_id"])
        self.items.append((kind, payload, done))
        if self.parked:
            self.wake.set()
        if done is not None:
            done.wait()

    def run(self) -> None:
        interval = self.broker.settings.finish_flush_interval
        items = self.items
        stop_by: float | None = None  # when stopping waits no longer for held claims
        while True:
            if not items:
                self.parked = True
                if not items:  # re-checked after parking: a submit in between sets wake
                    self.wake.wait(0.5)
                self.parked = False
                self.wake.clear()
                if not items:
                    if self.stopping.is_set():
                        return
                    continue
            # Let the other threads' finishes gather for one interval, then take them all.
            time.sleep(interval)
            batch, stop, later = [], False, []
            held = self.broker.held_claims
            while items and len(batch) < 2000:
                item = items.popleft()
                if item is None:  # stop sentinel, queued after everything else
                    stop = True
                    break
                if held and (item[1].get("message_id") in held or (later and item[2] is not None)):
                    # The job's claim is not committed yet: a statement now would see the row
                    # still queued, match nothing, and the run would go unrecorded. (A waiter
                    # queued after such an item waits for it too.)
                    later.append(item)
                    continue
                batch.append(item)
            if batch:
                self.flush_safely(batch)
            if later:
                if stop:
                    stop_by = stop_by or time.monotonic() + 2.0
                    if time.monotonic() >= stop_by:
                        self.flush_safely(later)  # a consumer that never committed: write what we can
                        return
                items.extendleft(reversed(later))  # first in the next round
                if stop:
                    items.append(None)
                continue
            if stop:
                return

    def flush_safely(self, batch: list) -> None:
        """Flush; a batch the database refuses (not a lost connection, which flush retries) is
        split so one bad item cannot hold back the others. An item refused on its own is
        dropped with an ERROR line naming the job: its row stays as it is (running, until this
        worker stops and it is rescued)."""
        try:
            self.flush(batch)
            return
        except Exception:
            if len(batch) == 1:
                kind, payload, done = batch[0]
                log.exception("finish_refused", kind=kind, job_id=payload.get("message_id"))
                self.recorded(batch)
                return
            log.exception("finish_batch_refused", items=len(batch), reason="retrying item by item")
        for item in batch:
            self.flush_safely([item])

    def flush(self, batch: list) -> None:
        finishes = [p for k, p, _ in batch if k == "finish"]
        # A job that started and finished within one flush needs no separate start update:
        # the finish sets the attempt number itself (one row version fewer per short job).
        finishing = {p["message_id"] for p in finishes}
        starts = [p for k, p, _ in batch if k == "start" and p["message_id"] not in finishing]
        releases = [p["message_id"] for k, p, _ in batch if k == "release"]
        handbacks = [p for k, p, _ in batch if k == "handback"]
        rejects = [p for k, p, _ in batch if k == "reject"]
        defers = [p for k, p, _ in batch if k == "defer"]
        worker_id = self.broker.worker_id
        # One message, one implicit transaction (autocommit connection): all of it or none.
        # The finishes go last, so the cursor's row count is theirs.
        calls: list[tuple[str, dict]] = []
        if starts:
            calls.append(("job_mark_started", {"starts": json.dumps(starts), "worker_id": worker_id}))
        if releases:
            calls.append(("job_release_unstarted", {"message_ids": releases, "worker_id": worker_id}))
        if handbacks:
            calls.append(("job_hand_back_started", {"jobs": json.dumps(handbacks), "worker_id": worker_id}))
        calls.extend(("job_reject_undecodable", {**reject, "worker_id": worker_id}) for reject in rejects)
        calls.extend(("job_defer_unknown_actor", {**defer, "worker_id": worker_id}) for defer in defers)
        if finishes:
            calls.append(("job_finish_many", {"finishes": json.dumps(finishes, default=str), "worker_id": worker_id}))
        while calls:
            conn = self.conn.get()
            try:
                cur = query_module.execute_together(conn.cursor(), "jobs", calls,
                                                    prepare=self.broker.settings.prepared_statements)
                if finishes and cur.rowcount < len(finishes):
                    log.warning("finish_discarded", count=len(finishes) - cur.rowcount,
                                reason="job no longer held by this worker (rescued or cancelled)")
                break
            except Exception as exc:
                if not _disconnected(exc):
                    raise
                self.conn.broken(exc)
                time.sleep(0.2)
        self.recorded(batch)

    def recorded(self, batch: list) -> None:
        """The batch is committed (or given up): its jobs no longer count against any window."""
        self.unrecorded.difference_update(p["message_id"] for k, p, _ in batch if k in ENDING_KINDS)
        self.broker.wake_consumers()
        for _, _, done in batch:
            if done is not None:
                done.set()

    def stop(self) -> None:
        self.items.append(None)
        self.wake.set()
        self.join(timeout=30)
        self.conn.close()


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
                if _disconnected(exc):
                    self.conn.broken(exc)
                else:
                    log.exception("heartbeat_failed")

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)
        try:
            workers.unregister(self.conn.get(), worker_id=self.broker.worker_id)
        except Exception as exc:
            if not (_disconnected(exc) or isinstance(exc, connection.DatabaseUnavailable)):
                raise
            # the row expires and any live worker cleans it up
        self.conn.close()


class Lifecycle(Middleware):
    """Worker boot/shutdown and per-job bookkeeping: attempt start, log context, result,
    and the graceful stop (grace, hand-back of unfinished attempts)."""

    @property
    def actor_options(self):
        # Job-column defaults an actor may declare next to itself (see COLUMN_OPTIONS).
        return set(ACTOR_COLUMN_OPTIONS)

    def before_worker_boot(self, broker, worker):
        broker.stopping = False
        broker.stop_requested_at = None
        broker.stop_deadline = None
        broker.start_worker_threads(sorted(worker.consumer_whitelist or broker.get_declared_queues()))
        broker.install_stop_signal_handler()

    def before_worker_shutdown(self, broker, worker):
        broker.request_stop()
        if broker.presence is not None:
            broker.presence.stopping = True
        stragglers = broker.wait_for_running_jobs()
        if stragglers:
            # Their threads may be stuck in blocking I/O: dramatiq must not wait for them.
            threads = {c.thread for c in stragglers}
            worker.workers = [t for t in worker.workers if t not in threads]

    def after_worker_shutdown(self, broker, worker):
        broker.stop_worker_threads()
        broker.restore_signal_handler()

    def before_process_message(self, broker, message):
        claim = broker.inflight.get(message.message_id)
        if claim is None:
            return
        if broker.stopping:
            # Claimed before the stop request but not started: it goes back untouched.
            raise SkipMessage("worker is stopping")
        message_id = message.message_id
        claim.started_at = broker.clock.timestamp()
        claim.started_mono = time.monotonic()
        claim.thread = threading.current_thread()
        logs.job_context.set({"job_id": message_id, "actor": claim.actor_name, "attempt": claim.current_attempt,
                              "queue": claim.queue_name, "tenant_id": claim.tenant_id})
        enqueued_by.set(f"job:{message_id}")
        current_job_id.set(message_id)
        broker.finisher.submit("start", {"message_id": message_id, "attempt": claim.attempt,
                                         "started_at": claim.started_at})
        # One INFO line per job is its finish (with duration and outcome); the start is DEBUG,
        # so a busy worker does not spend a third of its time writing logs.
        if _stdlib_log.isEnabledFor(logging.DEBUG):
            log.debug("job_started")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        claim = broker.inflight.get(message.message_id)
        if claim is not None and exception is None:
            claim.result = result


class LamplighterBroker(PostgresBroker):
    def __init__(self, *, settings: settings_module.Settings | None = None, middleware=None):
        self.settings = settings or settings_module.get()
        self._hooks: dict[str, tuple] = {}
        self._max_retries: Any = _UNSET
        # results=False: return values are summarised in the history row, not kept as
        # dramatiq results. The pool is unused by our consumer; dramatiq-pg wants one.
        super().__init__(url="", results=False, middleware=middleware)
        self.clock = clock_module.SystemClock(self.settings.clock_offset)
        self.worker_id = str(uuid.uuid4())
        self.inflight: dict[str, Claim] = {}
        # Jobs handed out by a claim whose COMMIT has not returned yet (LamplighterConsumer,
        # ``hold``): the finisher keeps their starts and finishes until it has.
        self.held_claims: set[str] = set()
        self.consumers: dict[str, LamplighterConsumer] = {}  # by queue, to tell one it has room again
        # Per queue: this worker's index among the queue's live workers, and how many there are
        # (refreshed every heartbeat): which enqueue wake-ups it answers first (storage/wakeups.py).
        self.places: dict[str, tuple[int, int]] = {}
        self.finisher: Finisher | None = None
        self.presence: Presence | None = None
        self.stopping = False
        self.stop_requested_at: float | None = None  # monotonic time of the first stop request
        self.stop_deadline: float | None = None  # end of the grace
        self._previous_sigterm = None
        self._signatures: dict[str, inspect.Signature] = {}
        self._good_shapes: set[tuple] = set()
        self.add_middleware(Lifecycle())

    # ---- sending -----------------------------------------------------------------------

    def _new_job(self, message: Message, delay: int | None) -> jobs.NewJob:
        options = message.options
        columns: dict[str, Any] = {}
        if "eta" in options or any(k in options for k in COLUMN_OPTIONS):
            options = dict(options)
            columns = {k: options.pop(k) for k in COLUMN_OPTIONS if k in options}
            options.pop("eta", None)
            message = message.copy(options=options)
        actor = self.actors.get(message.actor_name)
        if actor is not None:
            for name in ACTOR_COLUMN_OPTIONS:
                if name not in columns and actor.options.get(name) is not None:
                    columns[name] = actor.options[name]
        priority = columns.pop("priority", actor.priority if actor else 0)
        if not isinstance(priority, int):
            raise PayloadError(f"cannot send {message.actor_name}: priority must be an integer")
        unique_states = columns.pop("unique_states", None)
        if unique_states is not None and (isinstance(unique_states, str)
                                          or not all(isinstance(x, str) for x in unique_states)):
            raise PayloadError(f"cannot send {message.actor_name}: unique_states must be a list of states")
        on_conflict = columns.pop("unique_on_conflict", None) or "ignore"
        if on_conflict not in jobs.UNIQUE_POLICIES:
            raise PayloadError(f"cannot send {message.actor_name}: unique_on_conflict must be one of "
                               f"{', '.join(jobs.UNIQUE_POLICIES)}")
        limit = columns.pop("concurrency_limit", None)
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise PayloadError(f"cannot send {message.actor_name}: concurrency_limit must be a positive integer")
        if limit is not None and columns.get("concurrency_key") is None:
            columns["concurrency_key"] = message.actor_name  # a per-actor limit
        return jobs.NewJob(
            message_id=message.message_id,
            queue_name=message.queue_name,
            actor_name=message.actor_name,
            message=encode_message(message, self.settings.max_payload_bytes),
            priority=priority,
            delay_ms=int(delay or 0),
            max_attempts=self._max_attempts(actor, options),
            enqueued_by=enqueued_by.get() or _default_provenance(),
            unique_states=None if unique_states is None else tuple(unique_states),
            unique_on_conflict=on_conflict,
            concurrency_limit=limit,
            parent_id=current_job_id.get(),
            **{k: (None if v is None else str(v)) for k, v in columns.items()},
        )

    def _max_attempts(self, actor, options: dict) -> int | None:
        """Attempts a job gets: the message's max_retries, else the actor's, else Retries' default."""
        max_retries = options.get("max_retries", actor.options.get("max_retries") if actor else None)
        if max_retries is None:
            max_retries = self._default_max_retries()
        return None if max_retries is None else int(max_retries) + 1

    def _default_max_retries(self) -> int | None:
        if self._max_retries is _UNSET:
            self._max_retries = next((m.max_retries for m in self.middleware
                                      if isinstance(m, dramatiq.middleware.Retries)), None)
        return self._max_retries

    # ---- middleware signals ------------------------------------------------------------
    # dramatiq calls every middleware's hook for every signal, most of them the base class's
    # no-op: per job that was a tenth of a busy worker's time. Only overridden hooks are
    # called here, in dramatiq's order and with its error handling.

    def add_middleware(self, middleware, *, before=None, after=None):
        super().add_middleware(middleware, before=before, after=after)
        self._hooks = {}
        self._max_retries = _UNSET

    def _hooks_for(self, name: str) -> tuple:
        hooks = self._hooks.get(name)
        if hooks is None:
            base = getattr(Middleware, name, None)
            hooks = self._hooks[name] = tuple(
                (m, getattr(m, name)) for m in self.middleware if getattr(type(m), name, None) is not base)
        return hooks

    def emit_before(self, signal, *args, **kwargs):
        name = "before_" + signal
        for middleware, hook in self._hooks_for(name):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, middleware, exc_info=True)

    def emit_after(self, signal, *args, **kwargs):
        name = "after_" + signal
        for middleware, hook in reversed(self._hooks_for(name)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, middleware, exc_info=True)

    def enqueue(self, message, *, delay=None):
        claim = self.inflight.get(message.message_id)
        if claim is not None and isinstance(message, MessageProxy):
            # dramatiq's Retries re-sends the running message with a delay. Record it on the
            # claim instead: the finish then stores the failure, its history row and the next
            # attempt's time in one statement.
            claim.retry_delay_ms = int(delay or 0)
            return message
        self.emit_before("enqueue", message, delay)
        [job_id] = jobs.enqueue_many([self._new_job(message, delay)])
        self.emit_after("enqueue", message, delay)
        # A unique key already held returns the holder: the caller sees which job it is.
        return message if str(job_id) == message.message_id else message.copy(message_id=str(job_id))

    def enqueue_many(self, messages: Sequence[Message], *, delay: int | None = None) -> list[Message]:
        """Bulk enqueue: one statement for thousands of messages (plus one for unique ones)."""
        new = [self._new_job(m, delay) for m in messages]
        for m in messages:
            self.emit_before("enqueue", m, delay)
        ids = jobs.enqueue_many(new)
        for m in messages:
            self.emit_after("enqueue", m, delay)
        return [m if str(i) == m.message_id else m.copy(message_id=str(i)) for m, i in zip(messages, ids)]

    def send_many(self, actor, calls: Iterable[Sequence | dict], *, delay: int | None = None) -> list[str]:
        """Bulk enqueue of many calls of one actor, the fastest way in: each item is a tuple (or
        list) of positional arguments, or a dict of keyword arguments. Returns the job ids, in
        order. From ``storage.jobs.COPY_THRESHOLD`` calls on, immediate jobs of an actor without
        job-column defaults stream in with one COPY (no Message objects, one JSON encode per
        call); anything else takes :meth:`enqueue_many`. One transaction either way (or the
        caller's, inside ``database.atomic()``)."""
        items = [((), dict(c)) if isinstance(c, dict) else (tuple(c), {}) for c in calls]
        fast = (len(items) >= jobs.COPY_THRESHOLD and not delay
                and not self._hooks_for("before_enqueue") and not self._hooks_for("after_enqueue")
                and not any(actor.options.get(name) is not None for name in ACTOR_COLUMN_OPTIONS))

        def as_messages():
            return [actor.message_with_options(args=args, kwargs=kwargs) for args, kwargs in items]

        if not fast:
            return [m.message_id for m in self.enqueue_many(as_messages(), delay=delay)]
        # The same JSON as encode_message(actor.message(...)), without building the Message.
        stamp = current_millis()
        ids = _new_message_ids(len(items))
        messages = [(message_id, checked_payload(actor.actor_name, {
            "queue_name": actor.queue_name, "actor_name": actor.actor_name, "args": args, "kwargs": kwargs,
            "options": {}, "message_id": message_id, "message_timestamp": stamp}, self.settings.max_payload_bytes))
            for message_id, (args, kwargs) in zip(ids, items)]
        copied = jobs.copy_in_uniform(actor.queue_name, actor.actor_name, messages, priority=actor.priority,
                                      max_attempts=self._max_attempts(actor, {}),
                                      enqueued_by=enqueued_by.get() or _default_provenance())
        if not copied:  # an id already taken: cannot happen with fresh ids, but lose nothing
            return [m.message_id for m in self.enqueue_many(as_messages())]
        return ids

    # ---- consuming ---------------------------------------------------------------------

    def consume(self, queue_name, prefetch=1, timeout=30000):
        consumer = self.consumers[queue_name] = LamplighterConsumer(self, queue_name, prefetch)
        return consumer

    def wake_consumers(self) -> None:
        """Finishes were committed: a consumer that stopped claiming while they were pending
        may claim again."""
        for consumer in list(self.consumers.values()):
            consumer.room.set()

    def declare_queue(self, queue_name):
        # No delay queues: delays live in available_at, so there is nothing to consume on .DQ.
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues[queue_name] = True
            self.emit_after("declare_queue", queue_name)

    def start_worker_threads(self, queues: list[str]) -> None:
        self.finisher = Finisher(self)
        self.finisher.start()
        self.presence = Presence(self, queues)
        self.presence.register()
        self.presence.start()
        log.info("worker_started", worker_id=self.worker_id, queues=queues, pid=os.getpid())

    def stop_worker_threads(self) -> None:
        if self.finisher is not None:
            self.finisher.stop()
        if self.presence is not None:
            self.presence.stop()
        log.info("worker_stopped", worker_id=self.worker_id)

    # ---- graceful stop -----------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming now; the grace for running jobs starts with the first request."""
        self.stopping = True
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            self.stop_deadline = self.stop_requested_at + self.settings.shutdown_grace
            log.info("worker_stopping", worker_id=self.worker_id, grace_seconds=self.settings.shutdown_grace,
                     running=sum(1 for c in list(self.inflight.values()) if c.started_at is not None))

    def hurry_stop(self) -> None:
        """A second stop request: the grace ends now."""
        self.stop_deadline = time.monotonic()
        log.warning("worker_stop_hurried", worker_id=self.worker_id)

    def install_stop_signal_handler(self) -> None:
        """Under dramatiq's CLI, see SIGTERM before dramatiq does: stop claiming at once (its
        main loop notices only within a second), and turn a repeat more than a second later
        into "grace over" instead of dramatiq's immediate exit with status 1."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return  # not under dramatiq's CLI (e.g. a Worker started in-process by tests)
        self._previous_sigterm = previous

        received = itertools.count()

        def on_sigterm(signum, frame):
            # Python runs a handler again if a signal arrives while the first call is still
            # running (two near-simultaneous SIGTERMs). next() on a counter is one C call, so
            # exactly one call sees 0 and forwards to dramatiq; its second call would exit.
            if next(received) == 0:
                self.request_stop()
                previous(signum, frame)
            elif time.monotonic() - (self.stop_requested_at or time.monotonic()) > SIGNAL_REPEAT_WINDOW:
                self.hurry_stop()

        signal.signal(signal.SIGTERM, on_sigterm)

    def restore_signal_handler(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def wait_for_running_jobs(self) -> list[Claim]:
        """Until every started job finished or the grace ran out; then hand the unfinished ones
        back to the queue without consuming their attempt. Returns those."""
        while time.monotonic() < (self.stop_deadline or 0):
            if not any(c.started_at is not None for c in list(self.inflight.values())):
                return []
            time.sleep(0.05)
        stragglers = [c for c in list(self.inflight.values()) if c.started_at is not None]
        for claim in stragglers:
            self.inflight.pop(claim.message_id, None)
            consumer = self.consumers.get(claim.queue_name)
            if consumer is not None:
                consumer.released(claim.message_id)
        if stragglers and self.finisher is not None:
            for claim in stragglers:
                self.finisher.submit("handback", {"message_id": claim.message_id, "attempt": claim.current_attempt,
                                                  "reason": "shutdown grace over"})
            self.finisher.submit("flush", {}, wait=True)
            log.warning("jobs_handed_back", count=len(stragglers),
                        job_ids=[c.message_id for c in stragglers], reason="shutdown grace over")
            for claim in stragglers:
                _interrupt(claim.thread)
        return stragglers

    def check_arguments(self, actor, args: tuple, kwargs: dict) -> None:
        """TypeError unless ``args`` and ``kwargs`` can bind to the actor's function. Whether
        they can depends only on their count and keyword names: a shape that bound once is
        remembered (inspect's bind cost a busy consumer more than decoding the message)."""
        shape = (actor.actor_name, len(args), tuple(kwargs)) if len(kwargs) < 16 else None
        if shape is not None and shape in self._good_shapes:
            return
        sig = self._signatures.get(actor.actor_name)
        if sig is None:
            sig = self._signatures[actor.actor_name] = inspect.signature(actor.fn)
        sig.bind(*args, **kwargs)
        if shape is not None and len(self._good_shapes) < 10_000:
            self._good_shapes.add(shape)

    # ---- finishing (called on worker threads) ------------------------------------------

    def settle(self, message, verdict: str) -> None:
        """How the running attempt of ``message`` ends, when it is not plain success or retry:
        ``dead`` (no retry), ``cancelled``, or ``handback`` (interrupted by shutdown: back to
        the queue, attempt not consumed)."""
        claim = self.inflight.get(message.message_id)
        if claim is not None:
            claim.verdict = verdict

    def finish(self, message, *, failed: bool) -> None:
        if message.message_id in self.inflight and self.finisher is not None:
            # Held until its end is committed; marked before it leaves inflight, so that a
            # consumer reconciling after a lost claim never sees it in neither.
            self.finisher.unrecorded.add(message.message_id)
        claim = self.inflight.pop(message.message_id, None)
        if claim is None:
            return
        consumer = self.consumers.get(claim.queue_name)
        if consumer is not None:
            consumer.released(claim.message_id)
        current_job_id.set(None)
        if claim.started_at is None:
            if failed:
                # Failed before it ran: AgeLimit's max_age (the only middleware that fails a
                # message in before_process_message). Dead, with the reason; no attempt used.
                reason = f"MaxAgeExceeded: {_first_line(getattr(message, '_exception', None)) or 'message too old'}"
                log.error("job_rejected", job_id=claim.message_id, queue=claim.queue_name, reason=reason)
                self.finisher.submit("reject", {"message_id": claim.message_id, "reason": reason})
                return
            # Never started (e.g. skipped because the worker is stopping): hand it back untouched.
            self.finisher.submit("release", {"message_id": claim.message_id})
            return
        if claim.verdict == "handback":
            self.finisher.submit("handback", {"message_id": claim.message_id, "attempt": claim.current_attempt,
                                              "reason": "interrupted by worker shutdown"})
            log.warning("job_handed_back", reason="interrupted by worker shutdown")
            logs.job_context.set(None)
            enqueued_by.set(None)
            return
        duration_ms = (time.monotonic() - claim.started_mono) * 1000
        exc = getattr(message, "_exception", None)
        if claim.verdict == "cancelled":
            state, outcome = "cancelled", "cancelled"
        elif failed:
            state, outcome = "dead", "dead"
        elif claim.retry_delay_ms is not None:
            state, outcome = "queued", "failed"
        else:
            state, outcome = "completed", "completed"
        finish = {
            "message_id": claim.message_id, "attempt": claim.current_attempt, "state": state,
            "delay_ms": claim.retry_delay_ms, "outcome": outcome,
            "started_at": claim.started_at, "finished_at": self.clock.timestamp(),
            "duration_ms": round(duration_ms, 3), "args_digest": claim.digest,
            "error_type": None, "error_message": None, "traceback": None,
            "result_summary": _summarise(claim.result) if outcome == "completed" else None,
        }
        if exc is not None and outcome != "completed":
            finish["error_type"] = type(exc).__name__
            finish["error_message"] = str(exc)[:2000]
            finish["traceback"] = "".join(traceback_module.format_exception(exc))[-8000:]
        self.finisher.submit("finish", finish)
        if outcome == "completed":
            if _stdlib_log.isEnabledFor(logging.INFO):
                log.info("job_completed", duration_ms=round(duration_ms, 1))
        else:
            event = {"failed": "job_failed_will_retry", "dead": "job_dead", "cancelled": "job_cancelled"}[outcome]
            log.warning(event, duration_ms=round(duration_ms, 1), error_type=finish["error_type"],
                        retry_in_ms=claim.retry_delay_ms)
        logs.job_context.set(None)
        enqueued_by.set(None)


def _summarise(result: Any) -> Any:
    if result is None:
        return None
    try:
        text = json.dumps(result, default=str)
    except (TypeError, ValueError):
        return {"repr": repr(result)[:500]}
    return result if len(text) <= 2000 else {"truncated": text[:2000]}


def cancel_requested() -> bool:
    """For actors, between steps: has an operator asked the job this thread runs to stop? If
    so, the actor raises domain.outcomes.Cancel (the attempt ends cancelled). One query."""
    job_id = current_job_id.get()
    return job_id is not None and jobs.cancel_requested(job_id)


def _default_provenance() -> str:
    global _provenance
    pid = os.getpid()
    if _provenance is None or _provenance[0] != pid:  # per process: a fork gets its own
        _provenance = (pid, f"python:{socket.gethostname()}:{pid}")
    return _provenance[1]


_provenance: tuple[int, str] | None = None


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else ""


def _interrupt(thread: threading.Thread | None) -> None:
    """Raise dramatiq's Shutdown in a worker thread whose job was handed back, so Python code
    in it stops at its next bytecode (blocking I/O cannot be interrupted; the process exits)."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Shutdown))


class LamplighterConsumer(Consumer):
    """Claims batches of one queue for this worker; waits on LISTEN or polls."""

    def __init__(self, broker: LamplighterBroker, queue_name: str, prefetch: int):
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.settings = broker.settings
        # Jobs this consumer may hold (claimed, queued in the worker, or running): dramatiq's
        # prefetch (2 x threads) or one claim batch, whichever is larger. Bounded: a worker
        # holds only what it is about to run, whatever the backlog.
        self.window = max(self.prefetch, self.settings.claim_batch)
        self.refill_at = max(1, self.window // 2)
        # A worker thread finishing a job wakes this consumer only when that brings the window
        # down to where a claim is due (not on every finish: at thousands of jobs a second that
        # was a wake-up, a lock and a look at the window per job).
        self.low_water = self.window - self.refill_at
        self.room = threading.Event()
        self.room_wanted = False
        self.buffer: deque[MessageProxy] = deque()
        # Ids this consumer claimed and not yet released (finished, handed back): its window.
        self.mine: set[str] = set()
        # Autocommit: the claim is one statement, so one round trip (no BEGIN, no COMMIT).
        self.claim_conn = ResilientConnection(f"lamplighter-claim:{queue_name}", autocommit=True)
        self.listen_conn = ResilientConnection(f"lamplighter-listen:{queue_name}", autocommit=True)
        self.listening = False
        # The last claim died with its connection: it may have committed without our seeing it.
        self.claim_unsure = False
        self.answering: list[str] = []  # wake-up tickets the next claim answers
        self.answered: list[str] = []  # tickets a claim answered, announced once its jobs are out
        # A claim answering a wake-up of an idle consumer runs in a transaction that stays open
        # until its first job is handed out (the row locks keep every other claimer off): the
        # COMMIT's WAL flush overlaps the job's start instead of delaying it.
        self.claim_open = False
        self.holding: list[str] = []  # ids the open claim took
        self.unconfirmed: list[str] = []  # ids of a held claim whose COMMIT outcome is unknown

    def __iter__(self):
        return self

    def __next__(self):
        if self.claim_open:
            # The claim's first job is out: commit the claim, and say which tickets it answered.
            self._commit_claim(self.answered)
            self.answered = []
        if self.buffer:
            return self.buffer.popleft()
        if self.answered:
            # Tickets this consumer's last claim answered: say so now that what it claimed is
            # handed out (the job does not wait on this round trip).
            self._announce(self.answered)
            self.answered = []
        if self.broker.stopping:
            time.sleep(min(0.1, self.settings.poll_interval))
            return None
        capacity = self.window - len(self.mine)
        # Jobs that ran but whose finish is not committed yet would run again after a kill -9:
        # while the finisher is two windows behind, claim nothing more. (One window cost 12% of
        # throughput: a grouped commit of a busy worker routinely holds more than 50.)
        finisher = self.broker.finisher
        behind = finisher is not None and len(finisher.unrecorded) >= 2 * self.window
        # Claim a whole batch at a time, as soon as half the window is free: one round trip
        # then feeds many jobs, and the threads never wait on a claim for a single job.
        if not behind and (capacity >= self.refill_at or not self.mine):
            # Woken from idle for jobs just enqueued: hand the first one out before the COMMIT.
            # Busy consumers commit first, so a kill -9 mid-drain re-runs only what was running.
            hold = bool(self.answering) and not self.mine
            claimed = self._claim(min(capacity, self.settings.claim_batch), hold=hold) if capacity > 0 else []
            if claimed:
                self.answered, self.answering = self.answering, []
                self.buffer.extend(claimed)
                return self.buffer.popleft()
            if self.answering or self.claim_open:
                self._announce(self.answering)  # nothing found, but the tickets were answered
                self.answering = []
            # Nothing claimable. New jobs announce themselves (NOTIFY); jobs that become due or
            # whose concurrency slot frees do not: with jobs in hand, look again within 50 ms.
            self._wait_for_work(self.settings.poll_interval if not self.mine
                                else min(0.05, self.settings.poll_interval))
            return None
        # The window is more than half full, or finishes are behind: wait for room.
        self.room_wanted = True
        if behind or len(self.mine) > self.low_water:
            self.room.wait(min(0.05, self.settings.poll_interval))
        self.room_wanted = False
        self.room.clear()
        return None

    def released(self, message_id: str) -> None:
        """A worker thread finished (or gave up) one of this consumer's jobs."""
        self.mine.discard(message_id)
        if self.room_wanted and len(self.mine) <= self.low_water:
            self.room.set()

    def _claim(self, limit: int, *, hold: bool = False) -> list[MessageProxy]:
        """Claim up to ``limit`` jobs. ``hold``: claim one job without a concurrency key and
        leave the transaction open; the caller commits it (``_commit_claim``) once the job is
        handed out. (Found none: the full claim, committed, as without ``hold``.)"""
        try:
            conn = self.claim_conn.get()
            cur = conn.cursor()
            if self.unconfirmed:
                self._confirm_held(cur)
            if self.claim_unsure:
                self._release_unseen(cur)
                self.claim_unsure = False
            params = {"queue": self.queue_name, "limit": limit, "worker_id": self.broker.worker_id}
            found = []
            if hold:
                try:
                    query_module.execute(cur, "jobs", "job_claim_woken", params,
                                         prepare=self.settings.prepared_statements, begin=True)
                    found = jobs.rows(cur)
                    if not found:  # a keyed job, or another consumer was faster
                        hold = False
                        cur.execute("COMMIT")
                except Exception as exc:
                    if not _disconnected(exc):
                        cur.execute("ROLLBACK")
                    raise
            if not hold:
                query_module.execute(cur, "jobs", "job_claim_batch", params,
                                     prepare=self.settings.prepared_statements)
                found = jobs.rows(cur)
            self.claim_unsure = False
        except Exception as exc:
            if not _disconnected(exc):
                raise
            # Reconnect here (with backoff, on the next claim) rather than let dramatiq restart
            # the consumer after 3 s. The COMMIT may or may not have happened.
            self.claim_conn.broken(exc)
            if not hold:  # a held claim's open transaction died with its connection
                self.claim_unsure = True
            time.sleep(0.1)
            return []
        if hold:
            # Before any decoding: a rejection, too, must not be written before the COMMIT.
            self.claim_open = True
            self.holding = [str(row["message_id"]) for row in found]
            self.broker.held_claims.update(self.holding)
        proxies = []
        for row in found:
            proxy = self._to_proxy(row)
            if proxy is not None:
                proxies.append(proxy)
        return proxies

    def _commit_claim(self, tickets: list[str]) -> None:
        """Commit a held claim, with the announcement of the tickets it answered (delivered at
        the COMMIT). If the connection drops, the outcome is unknown: the next claim confirms
        the jobs or takes them back (``_confirm_held``); the finisher keeps their records
        until then."""
        self.claim_open = False
        try:
            cur = self.claim_conn.get().cursor()
            if tickets:
                query_module.execute(cur, "jobs", "job_announce", self._announcement(tickets),
                                     prepare=self.settings.prepared_statements, commit=True)
            else:
                cur.execute("COMMIT")
        except Exception as exc:
            if not _disconnected(exc):
                raise
            self.claim_conn.broken(exc)
            self.unconfirmed.extend(self.holding)  # re-taken on the next claim (_confirm_held)
        else:
            self.broker.held_claims.difference_update(self.holding)
        self.holding = []

    def _confirm_held(self, cur) -> None:
        """After a held claim's COMMIT was lost with the connection: its jobs are this worker's
        if the COMMIT happened; if not, they are queued again, and are taken back unless another
        worker has taken them meanwhile (those run again there; the finishes here match nothing)."""
        ids = self.unconfirmed
        cur.execute(SQL["job_confirm_held"], {"message_ids": ids, "worker_id": self.broker.worker_id})
        mine = {str(row[0]) for row in cur.fetchall()}
        self.unconfirmed = []
        lost = [message_id for message_id in ids if message_id not in mine]
        if lost:
            log.warning("held_claims_lost", queue=self.queue_name, count=len(lost), job_ids=lost[:20],
                        reason="a claim's COMMIT was lost with the connection and the jobs were taken again")
        self.broker.held_claims.difference_update(ids)

    def _release_unseen(self, cur) -> None:
        finisher = self.broker.finisher
        known = list(self.broker.inflight.keys() | (finisher.unrecorded if finisher is not None else set()))
        cur.execute(SQL["job_release_unseen"], {"worker_id": self.broker.worker_id, "queue": self.queue_name,
                                                "known": known})
        released = [str(row[0]) for row in cur.fetchall()]
        if released:
            log.warning("unseen_claims_released", queue=self.queue_name, count=len(released),
                        reason="a claim's commit outcome was lost with the connection; its jobs went back")

    def _to_proxy(self, row: dict) -> MessageProxy | None:
        message_id = str(row["message_id"])
        text = row["message"]
        try:
            data = json.loads(text)
            too_large = _payload_size(text, data, self.settings.max_payload_bytes)
            if too_large:
                self._reject(message_id, f"payload too large: {too_large} bytes, over the "
                                         f"{self.settings.max_payload_bytes}-byte limit (LAMPLIGHTER_MAX_PAYLOAD_BYTES)")
                return None
            message = _decode(data, message_id, self.queue_name)
            actor = self.broker.get_actor(message.actor_name)
            _check_identity(data, message_id)
        except dramatiq.errors.ActorNotFound:
            self._unknown_actor(row)
            return None
        except (TypeError, ValueError) as exc:
            self._reject(message_id, f"undecodable message: {exc}")
            return None
        try:
            # A TypeError from the call itself would be retried like any failure; arguments
            # that cannot bind never will.
            self.broker.check_arguments(actor, message.args, message.kwargs)
        except TypeError as exc:
            self._reject(message_id, f"undecodable message: arguments do not fit {actor.actor_name}: {exc}")
            return None
        # Retries decides from options.retries; the table's attempt count is the truth
        # (it includes attempts lost to a crash), so the message follows it.
        message.options["retries"] = row["attempt"]
        self.broker.inflight[message_id] = Claim(
            message_id=message_id, queue_name=self.queue_name, actor_name=message.actor_name,
            attempt=row["attempt"], tenant_id=row["tenant_id"], digest=args_digest(data))
        self.mine.add(message_id)
        return MessageProxy(message)

    def _reject(self, message_id: str, reason: str) -> None:
        log.error("job_rejected", job_id=message_id, queue=self.queue_name, reason=reason)
        self.broker.finisher.submit("reject", {"message_id": message_id, "reason": reason[:2000]})

    def _unknown_actor(self, row: dict) -> None:
        """A newer release may be rolling out: leave the job to a worker that knows the actor,
        until the grace (from enqueue) is over; then it is dead with the reason."""
        message_id, actor_name = str(row["message_id"]), row["actor_name"]
        grace = self.settings.unknown_actor_grace
        waited = (self.broker.clock.now() - row["enqueued_at"]).total_seconds()
        if waited >= grace:
            self._reject(message_id, f"unknown actor {actor_name!r}: no worker of this deployment has known it "
                                     f"within the {grace:g} s grace (LAMPLIGHTER_UNKNOWN_ACTOR_GRACE)")
            return
        delay = min(30.0, max(0.05, grace / 4), max(0.05, grace - waited))
        log.warning("job_left_for_another_worker", job_id=message_id, actor=actor_name,
                    reason="unknown actor", retry_in_s=round(delay, 2))
        self.broker.finisher.submit("defer", {
            "message_id": message_id, "delay_seconds": delay,
            "reason": f"unknown actor {actor_name!r}: waiting for a worker that knows it (grace {grace:g} s)"})

    def _wait_for_work(self, timeout: float) -> None:
        """Until an enqueue wake-up this consumer should answer (storage/wakeups.py), or
        ``timeout`` (the poll fallback, also what LAMPLIGHTER_LISTEN=false leaves)."""
        if not self.settings.listen:
            time.sleep(timeout)
            return
        try:
            conn = self.listen_conn.get()
            if not self.listening:
                conn.cursor().execute(f"LISTEN {self._channel(conn)}")
                self.listening = True
            deadline = time.monotonic() + timeout
            standing_in: dict[str, float] = {}  # tickets this consumer answers if nobody else does
            while True:
                due = min(standing_in.values(), default=deadline)
                if not conn.notifies:
                    select.select([conn], [], [], max(0.0, min(due, deadline) - time.monotonic()))
                conn.poll()
                notes = list(conn.notifies)
                conn.notifies.clear()
                place = self.broker.places.get(self.queue_name)
                wake_now = False
                for note in notes:
                    wake = wakeups.read(note.payload, place, self.settings.claim_batch)
                    if wake.kind == "taken":
                        standing_in.pop(wake.ticket, None)
                    elif wake.kind == "later":
                        standing_in.setdefault(wake.ticket, time.monotonic() + min(wake.delay, timeout))
                    else:
                        wake_now = True
                        if wake.ticket is not None:
                            self.answering.append(wake.ticket)
                now = time.monotonic()
                overdue = [t for t, at in standing_in.items() if at <= now]
                if overdue:
                    self.answering.extend(overdue)
                if wake_now or overdue or now >= deadline:
                    return
        except Exception as exc:
            if not _disconnected(exc):
                raise
            self.listening = False
            self.listen_conn.broken(exc)
            time.sleep(min(timeout, 1.0))

    def _announcement(self, tickets: list[str]) -> dict:
        return {"channel": f"dramatiq.{self.queue_name}.enqueue",
                "payloads": [wakeups.announcement(ticket) for ticket in tickets[:20]]}

    def _channel(self, conn) -> str:
        return psycopg2.extensions.quote_ident(f"dramatiq.{self.queue_name}.enqueue", conn)

    def _announce(self, tickets: list[str]) -> None:
        """Tell the consumers standing in for the tickets this one answered that it did."""
        if self.claim_open:
            self._commit_claim(tickets)  # with the held claim's COMMIT, which delivers it
            return
        try:
            query_module.execute(self.claim_conn.get().cursor(), "jobs", "job_announce",
                                 self._announcement(tickets), prepare=self.settings.prepared_statements)
        except Exception as exc:
            if not _disconnected(exc):
                raise
            self.claim_conn.broken(exc)  # the others stand in after their stagger: nothing is lost

    def ack(self, message):
        self.broker.finish(message, failed=False)

    def nack(self, message):
        self.broker.finish(message, failed=True)

    def requeue(self, messages: Iterable[MessageProxy]):
        ids = [m.message_id for m in messages]
        for message_id in ids:
            self.broker.inflight.pop(message_id, None)
            self.released(message_id)
        if ids and self.broker.finisher is not None:
            for message_id in ids:
                self.broker.finisher.submit("release", {"message_id": message_id})

    def close(self):
        if self.claim_open:
            self._commit_claim([])
        # Never confirmed (the consumer is going away): the finisher stops waiting for them.
        self.broker.held_claims.difference_update(self.unconfirmed)
        self.requeue(list(self.buffer))
        self.buffer.clear()
        self.claim_conn.close()
        self.listen_conn.close()


def _payload_size(text: str, data: Any, max_bytes: int) -> int | None:
    """The message's size when over the limit, measured like encode_message (compact JSON);
    None when within it. jsonb's text form is never shorter, so most rows need no re-dump."""
    if len(text) <= max_bytes // 4 or len(text.encode()) <= max_bytes:
        return None
    size = len(json.dumps(data, separators=(",", ":")).encode())
    return size if size > max_bytes else None


def _check_identity(data: dict, message_id: str) -> None:
    # After the actor look-up, so that a row for a newer release's actor waits out its grace.
    if not isinstance(data.get("message_id"), str) or not data["message_id"]:
        raise ValueError("field 'message_id' is missing")
    if data["message_id"] != message_id:
        raise ValueError("field 'message_id' does not match the row's message_id")


def _decode(data: Any, message_id: str, queue_name: str) -> Message:
    if not isinstance(data, dict):
        raise ValueError(f"message is a JSON {type(data).__name__}, not an object")
    for key, kind in (("actor_name", str), ("args", list), ("kwargs", dict), ("options", dict)):
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"field {key!r} must be a {kind.__name__}")
    if not isinstance(data.get("actor_name"), str) or not data["actor_name"]:
        raise ValueError("field 'actor_name' is missing")
    options = dict(data.get("options") or {})
    options.pop("eta", None)  # delays live in available_at; dramatiq would hold it in memory
    timestamp = data.get("message_timestamp", current_millis())
    if not isinstance(timestamp, int):
        raise ValueError("field 'message_timestamp' must be an integer")
    return Message(queue_name=queue_name, actor_name=data["actor_name"], args=tuple(data.get("args") or ()),
                   kwargs=dict(data.get("kwargs") or {}), options=options, message_id=message_id,
                   message_timestamp=timestamp)
