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

import inspect
import os
import time
import traceback as traceback_module
import uuid
from typing import Any, Iterable, Sequence

import structlog
from dramatiq.broker import MessageProxy
from dramatiq.common import current_millis
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError
from dramatiq_pg import PostgresBroker

from storage import clock as clock_module
from storage import connection, jobs, logs, message_ids, workers
from storage import settings as settings_module
from storage.engine import claims, codec, context, lifecycle
from storage.engine import columns as columns_module
from storage.engine.columns import ACTOR_COLUMN_OPTIONS, COLUMN_OPTIONS
from storage.engine.claims import Claim
from storage.engine.connection import SharedConnection, hot_statement_setup
from storage.engine.consumer import LamplighterConsumer
from storage.engine.finisher import Finisher
from storage.engine.listener import Listener
from storage.engine import presence as presence_module
from storage.engine.presence import Presence
from storage.engine.results import Carried

log = structlog.get_logger("lamplighter.broker")
job_log = logs.JobLogger("lamplighter.broker")  # per-job lines: rendered and written off the worker thread
SQL = jobs.SQL
# A memo not yet filled (the default max_retries is looked up once, from the middleware).
_UNSET = object()


class LamplighterBroker(PostgresBroker):
    """dramatiq's broker over the queue table (see the package docstring for the tour).

    State shared between threads, and who may change it: ``inflight`` (job id -> Claim) gets
    entries from the consumer threads and loses them on worker threads (dict operations are
    atomic); a Claim's start-or-give-up is decided under ``claims.lock``. ``worker_id`` (and
    ``identities``) is replaced only by the heartbeat thread (fencing), read by everyone else whole.
    ``places`` is replaced whole by the heartbeat thread. ``stopping`` and the stop times are
    set by the signal handler or the main thread; ``consumers`` by dramatiq's consumer threads at
    start, one key each.
    """

    def __init__(self, *, settings: settings_module.Settings | None = None, middleware=None):
        self.settings = settings or settings_module.get()
        self._hooks: dict[str, tuple] = {}
        self._max_retries: Any = _UNSET
        self._carried: Any = _UNSET  # what finishes carry for Results / GroupCallbacks (engine/results.py)
        # results=False: return values are summarised in the history row, not kept as
        # dramatiq results. The pool is unused by our consumer; dramatiq-pg wants one.
        super().__init__(url="", results=False, middleware=middleware)
        self.clock = clock_module.SystemClock(self.settings.clock_offset)
        self.worker_id = str(uuid.uuid4())
        # Every identity this process has claimed under (fence() adds one; replaced whole).
        self.identities: tuple[str, ...] = (self.worker_id,)
        self.inflight: dict[str, Claim] = {}
        self.worker_threads: int | None = None  # set at worker boot
        self.consumers: dict[str, LamplighterConsumer] = {}  # by queue, to tell one it has room again
        # Per queue: this worker's index among the queue's live workers, and how many there are
        # (refreshed every heartbeat): which enqueue wake-ups it answers first (storage/wakeups.py).
        self.places: dict[str, tuple[int, int]] = {}
        # The one LISTEN session every consumer of this process shares (listener.py).
        self.listener = Listener()
        # The one claim connection every consumer of this process shares, a claim at a time
        # (autocommit: a claim is one statement, one round trip; plans made once, connection.py).
        self.claim_conn = SharedConnection("claim", setup=hot_statement_setup(self.settings))
        self.finisher: Finisher | None = None
        self.presence: Presence | None = None
        self.stopping = False
        self.stop_requested_at: float | None = None  # monotonic time of the first stop request
        self.stop_deadline: float | None = None  # end of the grace
        self.previous_sigterm = None  # dramatiq's SIGTERM handler, while ours is installed
        self._signatures: dict[str, inspect.Signature] = {}
        self._good_shapes: set[tuple] = set()
        self.add_middleware(lifecycle.Lifecycle())

    # ---- sending -----------------------------------------------------------------------

    def _new_job(self, message: Message, delay: int | None) -> jobs.NewJob:
        options = message.options
        columns: dict[str, Any] = {}
        payload = message.asdict()
        if "eta" in options or any(k in options for k in COLUMN_OPTIONS):
            options = dict(options)
            columns = {k: options.pop(k) for k in COLUMN_OPTIONS if k in options}
            options.pop("eta", None)
            payload["options"] = options  # what message.copy(options=options) would encode, without the copy
        actor = self.actors.get(message.actor_name)
        resolved = columns_module.job_columns(
            message.actor_name, actor.options if actor is not None else {}, columns,
            default_priority=actor.priority if actor is not None else 0,
            max_retries=self._max_retries_of(actor, options))
        return jobs.NewJob(
            message_id=message.message_id,
            queue_name=message.queue_name,
            actor_name=message.actor_name,
            message=codec.checked_payload(message.actor_name, payload, self.settings.max_payload_bytes),
            delay_ms=int(delay or 0),
            enqueued_by=context.enqueued_by.get() or context.default_provenance(),
            parent_id=context.current_job_id.get(),
            **resolved,
        )

    def _max_retries_of(self, actor, options: dict) -> Any:
        """The message's max_retries, else the actor's, else Retries' default."""
        max_retries = options.get("max_retries", actor.options.get("max_retries") if actor else None)
        return self._default_max_retries() if max_retries is None else max_retries

    def _max_attempts(self, actor, options: dict) -> int | None:
        max_retries = self._max_retries_of(actor, options)
        return None if max_retries is None else int(max_retries) + 1

    def _default_max_retries(self) -> int | None:
        if self._max_retries is _UNSET:
            self._max_retries = columns_module.default_max_retries(self)
        return self._max_retries

    # ---- middleware signals ------------------------------------------------------------
    # dramatiq calls every middleware's hook for every signal, most of them the base class's
    # no-op: per job that was a tenth of a busy worker's time. Only overridden hooks are
    # called here, in dramatiq's order and with its error handling.

    def add_middleware(self, middleware, *, before=None, after=None):
        super().add_middleware(middleware, before=before, after=after)
        self._hooks = {}
        self._max_retries = _UNSET
        self._carried = _UNSET

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
        claim = claims.of(self.inflight, message)
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
        # The same JSON as codec.encode_message(actor.message(...)), without building the Message.
        stamp = current_millis()
        ids = message_ids.new_message_ids(len(items))
        messages = [(message_id, codec.checked_payload(actor.actor_name, {
            "queue_name": actor.queue_name, "actor_name": actor.actor_name, "args": args, "kwargs": kwargs,
            "options": {}, "message_id": message_id, "message_timestamp": stamp}, self.settings.max_payload_bytes))
            for message_id, (args, kwargs) in zip(ids, items)]
        copied = jobs.copy_in_uniform(actor.queue_name, actor.actor_name, messages, priority=actor.priority,
                                      max_attempts=self._max_attempts(actor, {}),
                                      enqueued_by=context.enqueued_by.get() or context.default_provenance())
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

    def reset_claim_connection(self) -> None:
        """A new claim connection, with the settings as they are now (a worker's start; tests
        point the broker at another database); the old one is closed."""
        old, self.claim_conn = self.claim_conn, SharedConnection("claim", setup=hot_statement_setup(self.settings))
        old.close()

    def start_worker_threads(self, queues: list[str]) -> None:
        self.reset_claim_connection()
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
        self.claim_conn.close()  # the consumers are closed by now (dramatiq stops them first)
        log.info("worker_stopped", worker_id=self.worker_id)

    def register_actors(self) -> None:
        """Record this deployment's actors in lamplighter.actors, which lamplighter.enqueue()
        checks: by the release step (so SQL enqueue works before any worker has started) and
        by every worker at start."""
        conn = connection.raw_connection("register-actors")
        try:
            conn.autocommit = True
            workers.register_actors(conn, presence_module.actor_rows(self))
        finally:
            conn.close()

    def fence(self) -> None:
        """This worker was declared dead (its heartbeat row was gone: it was paused, or cut off,
        for longer than the lease) and its jobs were handed to other workers. It takes a new
        identity; jobs it claimed and not started never start here, and the finishes of jobs it
        still runs name their old claim tokens, which match no row: they cannot overwrite the
        records of the jobs' next runs."""
        old, self.worker_id = self.worker_id, str(uuid.uuid4())
        self.identities = (*self.identities, self.worker_id)
        dropped, running = 0, 0
        for claim in list(self.inflight.values()):
            if claim.give_up():
                dropped += 1
                consumer = self.consumers.get(claim.queue_name)
                if consumer is not None:
                    consumer.released(claim.message_id)
                if self.finisher is not None:  # rescued already: matches nothing; else back at once
                    self.finisher.submit("release", {"message_id": claim.message_id, "token": claim.token})
            else:
                running += 1
        log.error("worker_declared_dead", worker_id=old, new_worker_id=self.worker_id,
                  unstarted_dropped=dropped, still_running=running,
                  reason="heartbeat row was gone: its jobs went to other workers; those still running here "
                         "will not be recorded")

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
        claim = claims.of(self.inflight, message)
        if claim is not None:
            claim.verdict = verdict

    def postpone(self, message, delay_ms: int) -> bool:
        """Send the claimed, not yet started job of ``message`` back to the queue for ``delay_ms``
        without using an attempt (a middleware's before_process_message, which then raises
        SkipMessage: a rate limit). False if it cannot be: not held here, or started already."""
        claim = claims.of(self.inflight, message)
        if claim is None or claim.started_at is not None:
            return False
        claim.verdict, claim.retry_delay_ms = "postpone", int(delay_ms)
        return True

    def finish(self, message, *, failed: bool) -> None:
        claim = claims.of(self.inflight, message)
        if claim is None:  # not ours, or a stale copy of a job handed back and claimed again
            return
        if claim.given_up:  # handed back or rescued before it started: its row is not ours
            self.inflight.pop(message.message_id, None)
            return
        if self.finisher is not None:
            # Held until its end is committed; marked before it leaves inflight, so that the
            # heartbeat's reconciliation never sees it in neither.
            self.finisher.unrecorded.add(message.message_id)
        self.inflight.pop(message.message_id, None)
        consumer = self.consumers.get(claim.queue_name)
        run_seconds = None if claim.started_mono is None else time.monotonic() - claim.started_mono
        if consumer is not None:
            consumer.released(claim.message_id, run_seconds)
        context.current_job_id.set(None)
        context.current_attempt.set(None)
        ids = {"message_id": claim.message_id, "token": claim.token}
        if claim.started_at is None:
            if failed:
                # Failed before it ran: AgeLimit's max_age (the only middleware that fails a
                # message in before_process_message). Dead, with the reason; no attempt used.
                reason = f"MaxAgeExceeded: {codec.first_line(getattr(message, '_exception', None)) or 'message too old'}"
                log.error("job_rejected", job_id=claim.message_id, queue=claim.queue_name, reason=reason)
                self.finisher.submit("reject", {**ids, "reason": codec.storable(reason)})
                return
            if claim.verdict == "postpone":
                self.finisher.submit("defer", {**ids, "delay_seconds": claim.retry_delay_ms / 1000, "reason": None})
                return
            # Never started (e.g. skipped because the worker is stopping): hand it back untouched.
            self.finisher.submit("release", ids)
            return
        if claim.verdict == "handback":
            self.finisher.submit("handback", {**ids, "attempt": claim.current_attempt,
                                              "reason": "interrupted by worker shutdown"})
            log.warning("job_handed_back", reason="interrupted by worker shutdown")
            logs.job_context.set(None)
            context.enqueued_by.set(None)
            return
        duration_ms = run_seconds * 1000
        exc = getattr(message, "_exception", None)
        if claim.verdict == "cancelled":
            state, outcome = "cancelled", "cancelled"
        elif failed:
            state, outcome = "dead", "dead"
        elif claim.retry_delay_ms is not None:
            state, outcome = "queued", "failed"
        else:
            state, outcome = "completed", "completed"
        # Fields left out are NULL to job_finish_many (jsonb_to_recordset): a completed job's
        # finish carries no empty error fields to encode and parse.
        finish = {
            "message_id": claim.message_id, "token": claim.token, "attempt": claim.current_attempt, "state": state,
            "outcome": outcome, "started_at": claim.started_at, "finished_at": self.clock.timestamp(),
            "duration_ms": round(duration_ms, 3), "args_digest": claim.digest,
        }
        if claim.retry_delay_ms is not None:
            finish["delay_ms"] = claim.retry_delay_ms
        if outcome == "completed" and claim.result is not None:
            finish["result_summary"] = codec.summarise(claim.result)
        if exc is not None and outcome != "completed":
            finish["error_type"] = codec.storable(type(exc).__name__)
            finish["error_message"] = codec.storable(str(exc)[:2000])
            finish["traceback"] = codec.storable("".join(traceback_module.format_exception(exc))[-8000:])
        carried = self._carried
        if carried is _UNSET:
            built = Carried(self)
            carried = self._carried = built if built.results is not None or built.groups else None
        if carried is not None:
            extra = carried.fields(self, message, outcome, claim.result, exc)
            if extra:
                finish.update(extra)
        self.finisher.submit("finish", finish)
        if outcome == "completed":
            job_log.info("job_completed", duration_ms=round(duration_ms, 1))
        else:
            event = {"failed": "job_failed_will_retry", "dead": "job_dead", "cancelled": "job_cancelled"}[outcome]
            job_log.warning(event, duration_ms=round(duration_ms, 1), error_type=finish.get("error_type"),
                            retry_in_ms=claim.retry_delay_ms)
        logs.job_context.set(None)
        context.enqueued_by.set(None)

