"""The finisher thread: every worker thread's attempt starts, finishes (with history rows) and
hand-backs, grouped into one transaction a flush interval."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import structlog

from storage import queries as query_module
from storage.engine.connection import ResilientConnection, disconnected, hot_statement_setup

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
# Finisher items that end this worker's hold on a job (a "start" does not).
ENDING_KINDS = frozenset({"finish", "release", "handback", "reject", "defer"})
# A refused statement (not a lost connection) is tried this many times before the batch is split.
REFUSAL_TRIES = 3
# An item refused on its own is parked and tried again this many times (pauses 1 s doubling to 30 s).
PARKED_TRIES = 6
# Finishes not yet sent that a process holds per worker thread before its threads wait to start
# another job (Finisher.unsent_cap): what a kill -9 runs again is the jobs running plus these.
# Issue #14's bound is 40 re-runs for a kill -9 of one of two processes of 8 threads; 3 per thread
# allows 8 + 24. Bench w12 (one of two killed, 2 x 8): 25, 27 and 36 re-runs at 3 per thread
# (16, 19, 22 at 2; 0, 29, 34 at 4, whose 8 + 32 leaves no room for the gate's inexact count).
# The gate costs throughput whenever threads reach it: w2 at the defaults, 5 interleaved rounds,
# median 4,657 jobs/s at 3 against 4,258 at 2 (bench/results/2026-12-07_w2_unsent_cap_3.json).
UNSENT_PER_THREAD = 3
# Built once (json.dumps with default= builds an encoder per call); the same output.
FINISH_ENCODER = json.JSONEncoder(default=str)


def reduced(finish: dict, error: BaseException) -> dict:
    """A finish the database refused, without what it may have refused: the error text,
    traceback and result are replaced by a placeholder naming the refusal."""
    code = getattr(error, "pgcode", None) or type(error).__name__
    if finish.get("result_key"):  # a dramatiq result: get_result raises ResultFailure, it does not wait
        finish = {**finish, "result": {"__t": "dramatiq.results.Result", "exn": {
            "type": "ResultRefused", "msg": f"the database refused this result ({code})"}}}
    return {**finish, "reduced": True, "traceback": None, "result_summary": None,
            "error_type": finish.get("error_type") and "".join(c for c in finish["error_type"] if c.isprintable()),
            "error_message": (f"[the database refused this attempt's error text or result ({code}); "
                              "the worker's log has the error]") if finish.get("error_type") else None}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

class Finisher(threading.Thread):
    """Groups attempt starts, finishes (with history rows) and hand-backs from every worker
    thread into one transaction every ``flush_interval`` seconds.

    Every statement names (job, claim token, attempt), so replaying a batch after a lost
    connection or an unknown COMMIT outcome changes nothing that was already applied.

    Threads: ``items`` is appended to by any thread and emptied by this one (a deque: both ends
    are atomic); ``unrecorded`` gets ids added by worker threads and removed here, and the
    heartbeat reads a copy; ``parked_items``, ``tries`` and the connection are this thread's.
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
        self.conn = ResilientConnection("finisher", autocommit=True, setup=hot_statement_setup(broker.settings))
        self.stopping = threading.Event()
        # Jobs that ran but whose finish is not committed yet. Consumers stop claiming while
        # there are two windows of them.
        self.unrecorded: set[str] = set()
        # How many of them the statement being sent carries (this thread writes it, worker threads
        # read it), from the moment the message is built. PostgreSQL runs a statement it has
        # received to its end, client gone or not, and job_finish_many answers nothing before its
        # COMMIT: a kill -9 once the message is out re-runs none of them. What a kill -9 re-runs is
        # the jobs running plus the finishes not yet sent. (Between the mark and the send this
        # thread may wait for the GIL: the gate's count is close, not exact; w6 measures it.)
        self.sending = 0
        # Items the database refused even on their own: (when to try again, tries, item).
        # Only this thread touches them.
        self.parked_items: list[tuple[float, int, tuple]] = []
        # Worker threads wait before starting a job while this many finishes are not yet sent: what
        # a kill -9 runs again is about that, plus the jobs running (lifecycle.py; UNSENT_PER_THREAD).
        self.unsent_cap = UNSENT_PER_THREAD * (broker.worker_threads or 8)
        # Half-way to the cap the flush goes at once, without the rest of its gathering interval:
        # under load the next batch then gathers while this one is in flight, and worker threads
        # seldom reach the cap and wait. Waiting for the cap first stalled every thread once a
        # flush (w2 at the defaults, 3 interleaved rounds: 6,157 jobs/s against 6,839 this way,
        # bench/results/2026-12-07_w2_send_at_half_the_cap.json).
        self.send_at = max(1, self.unsent_cap // 2)
        self.caught_up = threading.Condition()
        self.starts_waiting = 0
        self.hurry = threading.Event()
        self.last_flush_seconds = 0.0
        self.tries: dict[int, int] = {}

    def unsent(self) -> int:
        """Finishes (and other ends) not yet handed to the database: a kill -9 re-runs these."""
        return len(self.unrecorded) - self.sending

    def submit(self, kind: str, payload: dict, *, wait: bool = False) -> None:
        done = threading.Event() if wait else None
        if kind in ENDING_KINDS:
            self.unrecorded.add(payload["message_id"])
            if len(self.unrecorded) - self.sending >= self.send_at:
                self.hurry.set()
        self.items.append((kind, payload, done))
        if self.parked:
            self.wake.set()
        if done is not None:
            self.hurry.set()  # a worker thread waits on this commit: no gathering
            done.wait()

    def run(self) -> None:
        interval = self.broker.settings.finish_flush_interval
        items = self.items
        while True:
            if not items and not self.parked_items:
                self.parked = True
                if not items:  # re-checked after parking: a submit in between sets wake
                    self.wake.wait(0.5)
                self.parked = False
                self.wake.clear()
                if not items:
                    if self.stopping.is_set():
                        return
                    continue
            # Let the other threads' finishes gather for one interval, then take them all. The
            # previous flush's own time counts: under load the items gather while it runs, and a
            # sleep on top only leaves more jobs finished-but-unrecorded for a kill -9 to re-run.
            gather = interval - self.last_flush_seconds
            if gather > 0 and not self.starts_waiting:
                self.hurry.wait(gather)  # cut short when a worker thread waits on this commit
            self.hurry.clear()
            flush_started = time.monotonic()
            batch, stop = self._due_parked(), False
            while items and len(batch) < 2000:
                item = items.popleft()
                if item is None:  # stop sentinel, queued after everything else
                    stop = True
                    break
                batch.append(item)
            if batch:
                self.flush_safely(batch)
            self.last_flush_seconds = time.monotonic() - flush_started
            if stop:
                if self.parked_items:  # one last try; what is still refused, the rescue settles
                    self.flush_safely([item for _, _, item in self.parked_items], last=True)
                return

    def _due_parked(self) -> list:
        if not self.parked_items:
            return []
        now = time.monotonic()
        due = [entry for entry in self.parked_items if entry[0] <= now]
        self.parked_items = [entry for entry in self.parked_items if entry[0] > now]
        for _, tries, item in due:
            self.tries[id(item)] = tries
        return [item for _, _, item in due]

    def flush_safely(self, batch: list, *, last: bool = False) -> None:
        """Flush; a batch the database refuses (after a few tries: a lost connection is retried
        until it is back) is split in halves, so one bad item cannot hold back the others. A
        finish refused on its own is sent again reduced (state and attempt, a placeholder for
        its error text and result); an item still refused waits and is tried again, with
        growing pauses, PARKED_TRIES times. Then the heartbeat's reconciliation hands the job
        back to the queue (storage/sql/workers.sql, worker_reconcile): nothing stays running."""
        try:
            self.flush(batch)
            return
        except Exception as exc:
            if len(batch) > 1:
                log.warning("finish_batch_refused", items=len(batch), error=_first_line(exc),
                            sqlstate=getattr(exc, "pgcode", None), reason="retrying it in halves")
                half = len(batch) // 2
                self.flush_safely(batch[:half], last=last)
                self.flush_safely(batch[half:], last=last)
                return
            error = exc
        kind, payload, done = batch[0]
        if kind == "finish" and not payload.get("reduced"):
            log.error("finish_refused", job_id=payload.get("message_id"), error=_first_line(error),
                      sqlstate=getattr(error, "pgcode", None), reason="sending it again without its error text and result")
            self.flush_safely([(kind, reduced(payload, error), done)], last=last)
            return
        tries = self.tries.pop(id(batch[0]), 0) + 1
        if tries <= PARKED_TRIES and not last:
            delay = min(30.0, 0.5 * 2 ** tries)
            log.error("finish_parked", kind=kind, job_id=payload.get("message_id"), tries=tries,
                      retry_in_s=delay, error=_first_line(error), sqlstate=getattr(error, "pgcode", None))
            self.parked_items.append((time.monotonic() + delay, tries, batch[0]))
            return
        log.error("finish_given_up", kind=kind, job_id=payload.get("message_id"), error=_first_line(error),
                  reason="the heartbeat hands the job back to the queue as a lost attempt")
        self.recorded(batch)

    def flush(self, batch: list) -> None:
        finishes = [p for k, p, _ in batch if k == "finish"]
        # A job that started and finished within one flush needs no separate start update:
        # the finish sets the attempt number itself (one row version fewer per short job).
        finishing = {p["message_id"] for p in finishes}
        starts = [p for k, p, _ in batch if k == "start" and p["message_id"] not in finishing]
        releases = [p for k, p, _ in batch if k == "release"]
        handbacks = [p for k, p, _ in batch if k == "handback"]
        rejects = [p for k, p, _ in batch if k == "reject"]
        defers = [p for k, p, _ in batch if k == "defer"]
        worker_id = self.broker.worker_id
        # Every identity the process claimed under (a new one after a fence, broker.fence), as an
        # array literal: a prepared uuid[] parameter refuses psycopg2's ARRAY['...'] (text[]).
        worker_ids = "{%s}" % ",".join(sorted({worker_id, *self.broker.identities}))
        # One message, one implicit transaction (autocommit connection): all of it or none.
        # The finishes go last, so the cursor's row count is theirs.
        calls: list[tuple[str, dict]] = []
        if starts:
            calls.append(("job_mark_started", {"starts": json.dumps(starts)}))
        if releases:
            calls.append(("job_release_unstarted", {"jobs": json.dumps(releases), "worker_ids": worker_ids}))
        if handbacks:
            calls.append(("job_hand_back_started", {"jobs": json.dumps(handbacks), "worker_id": worker_id,
                                                    "worker_ids": worker_ids}))
        calls.extend(("job_reject_undecodable", reject) for reject in rejects)
        calls.extend(("job_defer_unknown_actor", defer) for defer in defers)
        if finishes:
            calls.append(("job_finish_many", {"finishes": FINISH_ENCODER.encode(finishes), "worker_id": worker_id,
                                              "worker_ids": worker_ids}))
        refusals = 0
        ending = sum(1 for kind, _, _ in batch if kind in ENDING_KINDS)

        def sending() -> None:
            self.sending = ending

        try:
            while calls:
                conn = self.conn.get()
                try:
                    cur = query_module.execute_together(conn.cursor(), "jobs", calls, before_send=sending,
                                                        prepare=self.broker.settings.prepared_statements)
                    recorded = cur.fetchone()[0] if finishes else 0
                    if recorded < len(finishes):
                        log.warning("finish_discarded", count=len(finishes) - recorded,
                                    reason="job no longer held by this claim (rescued or cancelled)")
                    break
                except Exception as exc:
                    if disconnected(exc):
                        self.conn.broken(exc)
                        time.sleep(0.2)
                        continue
                    refusals += 1
                    if refusals >= REFUSAL_TRIES:
                        raise
                    time.sleep(0.05 * 2 ** refusals)  # a deadlock or lock timeout may pass
            self.recorded(batch)
        finally:
            self.sending = 0

    def recorded(self, batch: list) -> None:
        """The batch is committed (or given up): its jobs no longer count against any window."""
        self.sending = 0  # first: for a moment the gate over-counts, never under-counts
        self.unrecorded.difference_update(p["message_id"] for k, p, _ in batch if k in ENDING_KINDS)
        if self.starts_waiting:
            with self.caught_up:
                self.caught_up.notify_all()
        self.broker.wake_consumers()
        for _, _, done in batch:
            if done is not None:
                done.set()

    def wait_to_start(self) -> None:
        """For a worker thread about to start a job: while finishes not yet sent are at the cap,
        wait for the next commit (a few milliseconds; never longer than a second)."""
        deadline = time.monotonic() + 1.0
        with self.caught_up:
            self.starts_waiting += 1
            self.hurry.set()
            try:
                while self.unsent() >= self.unsent_cap and time.monotonic() < deadline:
                    self.caught_up.wait(0.05)
            finally:
                self.starts_waiting -= 1

    def stop(self) -> None:
        self.items.append(None)
        self.wake.set()
        self.join(timeout=30)
        self.conn.close()

