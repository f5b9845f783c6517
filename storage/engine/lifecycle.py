"""Worker boot, per-job bookkeeping and the graceful stop, as dramatiq middleware plus the
stop-request handling the broker delegates to."""
from __future__ import annotations

import ctypes
import itertools
import signal
import threading
import time
from typing import TYPE_CHECKING

import structlog
from dramatiq.middleware import Middleware, Shutdown, SkipMessage

from storage import connection, logs
from storage.engine import claims, context
from storage.engine.claims import Claim
from storage.engine.columns import ACTOR_COLUMN_OPTIONS

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
job_log = logs.JobLogger("lamplighter.broker")  # per-job lines: rendered and written off the worker thread
# Seconds between two SIGTERM/SIGINT that are still one stop request (Heroku signals every
# process of a dyno, and dramatiq's main process forwards what it receives).
SIGNAL_REPEAT_WINDOW = 1.0

class Lifecycle(Middleware):
    """Worker boot/shutdown and per-job bookkeeping: attempt start, log context, result,
    and the graceful stop (grace, hand-back of unfinished attempts)."""

    @property
    def actor_options(self):
        # Job-column defaults an actor may declare next to itself (see COLUMN_OPTIONS).
        return set(ACTOR_COLUMN_OPTIONS)

    def after_process_boot(self, broker):
        # dramatiq's worker processes (`dramatiq actors`, as `lamplighter worker` runs it): their
        # connections say so and take the worker's statement timeout. An in-process Worker
        # (tests) leaves its process's kind alone.
        connection.set_process_kind("worker")

    def before_worker_boot(self, broker, worker):
        broker.worker_threads = worker.worker_threads  # before the consumers: they claim for free threads
        broker.stopping = False
        broker.stop_requested_at = None
        broker.stop_deadline = None
        broker.start_worker_threads(sorted(worker.consumer_whitelist or broker.get_declared_queues()))
        install_stop_signal_handler(broker)

    def before_worker_shutdown(self, broker, worker):
        request_stop(broker)
        if broker.presence is not None:
            broker.presence.stopping = True
        stragglers = wait_for_running_jobs(broker)
        if stragglers:
            # Their threads may be stuck in blocking I/O: dramatiq must not wait for them.
            threads = {c.thread for c in stragglers}
            worker.workers = [t for t in worker.workers if t not in threads]

    def after_worker_shutdown(self, broker, worker):
        broker.stop_worker_threads()
        restore_signal_handler(broker)

    def before_process_message(self, broker, message):
        claim = claims.of(broker.inflight, message)
        if claim is None:
            if message.options.get(claims.TOKEN_OPTION) is not None:
                # Handed back (or rescued) and claimed again: the current claim has its own message.
                raise SkipMessage("a stale copy of a job claimed again")
            return
        if broker.stopping:
            # Claimed before the stop request but not started: it goes back untouched.
            raise SkipMessage("worker is stopping")
        presence = broker.presence
        if presence is not None and not presence.fresh():
            # No heartbeat confirmed for a lease (the process was paused, or the database was
            # away): another worker may have declared this one dead and rescued the job. Start
            # nothing until a heartbeat says which.
            presence.wait_fresh(lambda: broker.stopping)
        finisher = broker.finisher
        if finisher is not None and finisher.unsent() >= finisher.unsent_cap:
            finisher.wait_to_start()  # bounds what a kill -9 runs again (finisher.py)
        if not claim.start(broker.clock.timestamp(), time.monotonic()):
            raise SkipMessage("handed back or rescued before it started")
        message_id = message.message_id
        claim.thread = threading.current_thread()
        logs.job_context.set({"job_id": message_id, "actor": claim.actor_name, "attempt": claim.current_attempt,
                              "queue": claim.queue_name, "tenant_id": claim.tenant_id})
        context.enqueued_by.set(f"job:{message_id}")
        context.current_job_id.set(message_id)
        context.current_attempt.set(claim.current_attempt)
        # A job of a queue whose runs take over LONG_JOB_SECONDS on average (or are not known yet)
        # starts once its start is committed: a kill -9 then always leaves its attempt spent and
        # on record (`lost`), and a job that kills its worker as it starts goes dead after its
        # attempts instead of running for ever. The wait (one commit, shared by the threads
        # starting at the same time) is a few milliseconds. A short job's start goes with its
        # finish, in the flush window: waiting would halve a drain of no-op jobs, and a kill -9
        # in the milliseconds before that flush runs it again without a `lost` row (the rescue
        # notes it as a `rescued` event). A job a dead worker's rescue has handed back that way
        # before waits for its start whatever its queue (claim.confirm_start): if it is what
        # killed that worker, it spends an attempt each time and goes dead after the last.
        consumer = broker.consumers.get(claim.queue_name)
        broker.finisher.submit("start", {"message_id": message_id, "token": claim.token, "attempt": claim.attempt,
                                         "started_at": claim.started_at},
                               wait=consumer is None or consumer.long_jobs or claim.confirm_start)
        # One INFO line per job is its finish (with duration and outcome); the start is DEBUG.
        job_log.debug("job_started")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        claim = claims.of(broker.inflight, message)
        if claim is not None and exception is None:
            claim.result = result


def interrupt(thread: threading.Thread | None) -> None:
    """Raise dramatiq's Shutdown in a worker thread whose job was handed back, so Python code
    in it stops at its next bytecode (blocking I/O cannot be interrupted; the process exits)."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Shutdown))




def request_stop(broker: "LamplighterBroker") -> None:
    """Stop claiming now; the grace for running jobs starts with the first request."""
    broker.stopping = True
    if broker.stop_requested_at is None:
        broker.stop_requested_at = time.monotonic()
        broker.stop_deadline = broker.stop_requested_at + broker.settings.shutdown_grace
        log.info("worker_stopping", worker_id=broker.worker_id, grace_seconds=broker.settings.shutdown_grace,
                 running=sum(1 for c in list(broker.inflight.values()) if c.started_at is not None))

def hurry_stop(broker: "LamplighterBroker") -> None:
    """A second stop request: the grace ends now."""
    broker.stop_deadline = time.monotonic()
    log.warning("worker_stop_hurried", worker_id=broker.worker_id)

def install_stop_signal_handler(broker: "LamplighterBroker") -> None:
    """Under dramatiq's CLI, see SIGTERM before dramatiq does: stop claiming at once (its
    main loop notices only within a second), and turn a repeat more than a second later
    into "grace over" instead of dramatiq's immediate exit with status 1."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # not under dramatiq's CLI (e.g. a Worker started in-process by tests)
    broker.previous_sigterm = previous

    received = itertools.count()

    def on_sigterm(signum, frame):
        # Python runs a handler again if a signal arrives while the first call is still
        # running (two near-simultaneous SIGTERMs). next() on a counter is one C call, so
        # exactly one call sees 0 and forwards to dramatiq; its second call would exit.
        if next(received) == 0:
            request_stop(broker)
            previous(signum, frame)
        elif time.monotonic() - (broker.stop_requested_at or time.monotonic()) > SIGNAL_REPEAT_WINDOW:
            hurry_stop(broker)

    signal.signal(signal.SIGTERM, on_sigterm)

def restore_signal_handler(broker: "LamplighterBroker") -> None:
    if broker.previous_sigterm is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, broker.previous_sigterm)
        broker.previous_sigterm = None

def wait_for_running_jobs(broker: "LamplighterBroker") -> list[Claim]:
    """Until every started job finished or the grace ran out; then hand the unfinished ones
    back to the queue without consuming their attempt. Returns those."""
    while time.monotonic() < (broker.stop_deadline or 0):
        if not any(c.started_at is not None for c in list(broker.inflight.values())):
            return []
        time.sleep(0.05)
    stragglers = [c for c in list(broker.inflight.values()) if c.started_at is not None]
    for claim in stragglers:
        broker.inflight.pop(claim.message_id, None)
        consumer = broker.consumers.get(claim.queue_name)
        if consumer is not None:
            consumer.released(claim.message_id)
    if stragglers and broker.finisher is not None:
        for claim in stragglers:
            broker.finisher.submit("handback", {"message_id": claim.message_id, "token": claim.token,
                                                "attempt": claim.current_attempt, "reason": "shutdown grace over"})
        broker.finisher.submit("flush", {}, wait=True)
        log.warning("jobs_handed_back", count=len(stragglers),
                    job_ids=[c.message_id for c in stragglers], reason="shutdown grace over")
        for claim in stragglers:
            interrupt(claim.thread)
    return stragglers
