"""Claims batches of one queue for this worker; waits on LISTEN (enqueue wake-ups) or polls."""
from __future__ import annotations

import json
import select
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Iterable

import dramatiq
import psycopg2.extensions
import structlog
from dramatiq.broker import Consumer, MessageProxy

from storage import jobs, wakeups
from storage import queries as query_module
from storage.engine import codec
from storage.engine.claims import Claim
from storage.engine.connection import ResilientConnection, disconnected

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
SQL = jobs.SQL

class LamplighterConsumer(Consumer):
    """Claims batches of one queue for this worker; waits on LISTEN or polls."""

    def __init__(self, broker: "LamplighterBroker", queue_name: str, prefetch: int):
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
                    if not disconnected(exc):
                        cur.execute("ROLLBACK")
                    raise
            if not hold:
                query_module.execute(cur, "jobs", "job_claim_batch", params,
                                     prepare=self.settings.prepared_statements)
                found = jobs.rows(cur)
            self.claim_unsure = False
        except Exception as exc:
            if not disconnected(exc):
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
            if not disconnected(exc):
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
            too_large = codec.payload_size(text, data, self.settings.max_payload_bytes)
            if too_large:
                self._reject(message_id, f"payload too large: {too_large} bytes, over the "
                                         f"{self.settings.max_payload_bytes}-byte limit (LAMPLIGHTER_MAX_PAYLOAD_BYTES)")
                return None
            message = codec.decode(data, message_id, self.queue_name)
            actor = self.broker.get_actor(message.actor_name)
            codec.check_identity(data, message_id)
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
            attempt=row["attempt"], tenant_id=row["tenant_id"], digest=codec.args_digest(data))
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
            if not disconnected(exc):
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
            if not disconnected(exc):
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

