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
from storage.engine.connection import ResilientConnection, disconnected

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
# Finisher items that end this worker's hold on a job (a "start" does not).
ENDING_KINDS = frozenset({"finish", "release", "handback", "reject", "defer"})

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
                if not disconnected(exc):
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

