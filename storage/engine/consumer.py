"""Claims batches of one queue for this worker; waits on LISTEN (enqueue wake-ups) or polls."""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Iterable

import dramatiq
import structlog
from dramatiq.broker import Consumer, MessageProxy

from storage import jobs, wakeups
from storage import queries as query_module
from storage.engine import claims, codec
from storage.engine.claims import Claim
from storage.engine.connection import disconnected

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

log = structlog.get_logger("lamplighter.broker")
SQL = jobs.SQL

# Jobs that ran longer than this on average make a consumer claim only for free threads: a
# claim round trip per job costs them nothing, and jobs waiting in one worker's memory behind
# long ones would wait while another worker has free threads.
LONG_JOB_SECONDS = 0.1
# A claimed job that has waited this long for a thread goes back to the queue, if other workers
# consume the queue (one of them may have a free thread).
HOLD_SECONDS = 1.0


class ClaimedMessage(MessageProxy):
    """dramatiq's MessageProxy, equal only to itself. dramatiq's work queue is a heap of
    (priority, message): on equal priorities every comparison first asks whether the two
    messages are equal, which MessageProxy answers by comparing every field of both messages
    (half the cost of a job's trip through the heap). Two claimed messages are never the same
    job run; which of them runs first was never decided by the comparison (``__lt__`` is always
    True)."""

    def __eq__(self, other):
        return self is other

    __hash__ = None  # as MessageProxy's: unhashable


class LamplighterConsumer(Consumer):
    """Claims batches of one queue for this worker; waits on LISTEN or polls.

    Runs on dramatiq's consumer thread for the queue. ``mine``, ``room`` and the run-time
    average are also touched by worker threads (:meth:`released`), through single operations
    on a set, an Event and a float; everything else belongs to the consumer thread.
    """

    def __init__(self, broker: "LamplighterBroker", queue_name: str, prefetch: int):
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.settings = broker.settings
        # The worker's threads (shared by the queues it consumes); without a booted worker,
        # dramatiq's default prefetch is twice the threads.
        self.threads = broker.worker_threads or max(1, self.prefetch // 2)
        # Jobs this consumer may hold (claimed, queued in the worker, or running) while jobs are
        # short: dramatiq's prefetch or one claim batch, whichever is larger. Bounded: a worker
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
        # Average run time of this queue's jobs here (seconds); None until one has finished, and
        # until then jobs count as long: the first claim of a burst of long jobs takes only what
        # the threads can start, and leaves the rest to other workers.
        self.run_seconds: float | None = None
        self.next_hand_back_check = 0.0
        # Enqueue wake-ups come through the process's one LISTEN session (listener.py); this
        # consumer's inbox, once it first waits.
        self.inbox = None
        # Tokens of claims that died with their connection: they may have committed unseen.
        self.lost_tokens: list[int] = []
        self.answering: list[str] = []  # wake-up tickets the next claim answers
        self.answered: list[str] = []  # tickets answered by a claim that may not have taken all

    def __iter__(self):
        return self

    @property
    def listening(self) -> bool:
        """Whether enqueue wake-ups of this queue reach this consumer now."""
        return self.inbox is not None and self.broker.listener.listening(self.inbox.channel)

    @property
    def long_jobs(self) -> bool:
        return self.run_seconds is None or self.run_seconds > LONG_JOB_SECONDS

    def __next__(self):
        if self.buffer:
            return self.buffer.popleft()
        if self.broker.stopping:
            time.sleep(min(0.1, self.settings.poll_interval))
            return None
        # The worker's threads run every queue's jobs: what the other consumers hold counts too.
        held = sum(len(consumer.mine) for consumer in list(self.broker.consumers.values())) \
            if len(self.broker.consumers) > 1 else len(self.mine)
        if self.mine and held >= self.threads:
            self._hand_back_waiting()
        if self.long_jobs:  # claim only for free threads
            capacity = min(self.window - len(self.mine), self.threads - held)
            due = capacity > 0
        else:  # claim a whole batch at a time, as soon as half the window is free
            capacity = self.window - len(self.mine)
            due = capacity >= self.refill_at or not self.mine
        # Jobs that ran but whose finish is not committed yet would run again after a kill -9:
        # while the finisher is two windows behind, claim nothing more.
        finisher = self.broker.finisher
        behind = finisher is not None and len(finisher.unrecorded) >= 2 * self.window
        if due and not behind:
            limit = min(capacity, self.settings.claim_batch)
            # Woken from idle for jobs just enqueued: the short claim of one job first.
            claimed, filled = self._claim(limit, woken=bool(self.answering) and not self.mine)
            self.answered += self.answering
            self.answering = []
            if not filled and self.answered:
                # This claim took all there was: tell the consumers standing in for the tickets
                # (storage/wakeups.py). While claims come back full, they stand in after their
                # stagger and claim what this worker has no room for.
                self._announce(self.answered)
                self.answered = []
            if claimed:
                self.buffer.extend(claimed)
                return self.buffer.popleft()
            # Nothing claimable. New jobs announce themselves (NOTIFY); jobs that become due or
            # whose concurrency slot frees do not: with jobs in hand, look again within 50 ms.
            self._wait_for_work(self.settings.poll_interval if not self.mine
                                else min(0.05, self.settings.poll_interval))
            return None
        self.answered = []  # no room: the stand-ins claim these tickets' jobs
        # The window is full enough, the worker's threads are all taken (by this queue's jobs or
        # another's), or finishes are behind: wait for room. Always wait: returning at once
        # would spin this thread (and dramatiq's loop around it) until room appears. A release
        # by this consumer's jobs sets `room`; a thread freed by another queue's job is seen
        # within the 50 ms bound.
        self.room_wanted = True
        self.room.wait(min(0.05, self.settings.poll_interval))
        self.room_wanted = False
        self.room.clear()
        return None

    def _low_water(self) -> int:
        return min(self.window, self.threads) - 1 if self.long_jobs else self.low_water

    def released(self, message_id: str, run_seconds: float | None = None) -> None:
        """A worker thread finished (or gave up) one of this consumer's jobs."""
        self.mine.discard(message_id)
        if run_seconds is not None:
            average = self.run_seconds
            self.run_seconds = run_seconds if average is None else average * 0.8 + run_seconds * 0.2
        if self.room_wanted and len(self.mine) <= self._low_water():
            self.room.set()

    def _hand_back_waiting(self) -> None:
        """Jobs claimed here that have waited more than HOLD_SECONDS for a thread go back to
        the queue when other workers consume it: one of them may be idle."""
        now = time.monotonic()
        if now < self.next_hand_back_check:
            return
        self.next_hand_back_check = now + HOLD_SECONDS / 4
        place = self.broker.places.get(self.queue_name)
        if place is None or place[1] <= 1:
            return
        inflight = self.broker.inflight
        waiting = [c for c in (inflight.get(m) for m in list(self.mine))
                   if c is not None and c.started_at is None and now - c.claimed_mono > HOLD_SECONDS]
        given_up = [c for c in waiting if c.give_up()]
        if not given_up:
            return
        for claim in given_up:
            self.mine.discard(claim.message_id)
            self.broker.finisher.submit("release", {"message_id": claim.message_id, "token": claim.token})
        log.info("claimed_jobs_handed_back", queue=self.queue_name, count=len(given_up),
                 reason=f"waited over {HOLD_SECONDS:g} s for a thread; other workers consume the queue")

    def _claim(self, limit: int, *, woken: bool = False) -> tuple[list[MessageProxy], bool]:
        """Claim up to ``limit`` jobs. Returns the messages and whether the claim came back full
        (more may be waiting). ``woken``: the short claim of one job without a concurrency key
        first (an idle consumer answering a wake-up); the full claim if it finds none."""
        token = claims.new_token()
        shared = self.broker.claim_conn  # the process's one claim connection (broker.py)
        failure = None
        with shared as conn:
            try:
                cur = conn.cursor()
                if self.lost_tokens:
                    self._release_lost_claims(cur)
                params = {"queue": self.queue_name, "limit": limit, "worker_id": self.broker.worker_id,
                          "token": token}
                found = []
                if woken:
                    query_module.execute(cur, "jobs", "job_claim_woken", params,
                                         prepare=self.settings.prepared_statements)
                    found = jobs.rows(cur)
                    limit = 1
                if not found:
                    query_module.execute(cur, "jobs", "job_claim_batch", params,
                                         prepare=self.settings.prepared_statements)
                    found = jobs.rows(cur)
            except Exception as exc:
                failure = exc
                if disconnected(exc):
                    shared.broken(exc)
        if failure is not None:  # the pauses below hold no lock: the other queues claim meanwhile
            if disconnected(failure):
                # Reconnect here (with backoff, on the next claim) rather than let dramatiq restart
                # the consumer after 3 s. The claim may have committed: its rows go back next time.
                self.lost_tokens.append(token)
                time.sleep(0.1)
            else:  # refused by a live server (statement timeout, ...): nothing was claimed
                log.warning("claim_refused", queue=self.queue_name, error=codec.first_line(failure),
                            sqlstate=getattr(failure, "pgcode", None))
                time.sleep(min(1.0, self.settings.poll_interval))
            return [], False
        now = time.monotonic()
        proxies = []
        for row in found:
            proxy = self._to_proxy(row, token, now)
            if proxy is not None:
                proxies.append(proxy)
        if params["worker_id"] != self.broker.worker_id:
            # Fenced while this claim ran (claims.py): it took rows under the identity declared
            # dead. Checked after the claims are in inflight, so either the fence gave them up or
            # this does; they go back at once.
            for proxy in proxies:
                claim = self.broker.inflight.pop(proxy.message_id, None)
                self.released(proxy.message_id)
                if claim is not None and claim.give_up():
                    self.broker.finisher.submit("release", {"message_id": claim.message_id, "token": claim.token})
            return [], False
        return proxies, len(found) >= limit

    def _release_lost_claims(self, cur) -> None:
        cur.execute(SQL["job_release_lost_claim"], {"tokens": self.lost_tokens,
                                                     "worker_ids": list(self.broker.identities)})
        released = cur.fetchall()
        self.lost_tokens = []
        if released:
            log.warning("unseen_claims_released", queue=self.queue_name, count=len(released),
                        reason="a claim's commit outcome was lost with the connection; its jobs went back")

    def _to_proxy(self, row: dict, token: int, claimed_mono: float) -> MessageProxy | None:
        message_id = str(row["message_id"])
        text = row["message"]
        try:
            data = json.loads(text)
            too_large = codec.payload_size(text, data, self.settings.max_payload_bytes)
            if too_large:
                self._reject(message_id, token, f"payload too large: {too_large} bytes, over the "
                                         f"{self.settings.max_payload_bytes}-byte limit (LAMPLIGHTER_MAX_PAYLOAD_BYTES)")
                return None
            message = codec.decode(data, message_id, self.queue_name)
            actor = self.broker.get_actor(message.actor_name)
            codec.check_identity(data, message_id)
        except dramatiq.errors.ActorNotFound:
            self._unknown_actor(row, token)
            return None
        except (TypeError, ValueError) as exc:
            self._reject(message_id, token, f"undecodable message: {exc}")
            return None
        except RecursionError:
            # JSON nested deeper than Python's recursion limit (jsonb takes thousands of levels).
            # Uncaught, it ended the claim: the batch's other rows stayed claimed and never ran.
            self._reject(message_id, token, "undecodable message: nested too deeply to decode "
                                            f"(over {sys.getrecursionlimit()} levels)")
            return None
        try:
            # A TypeError from the call itself would be retried like any failure; arguments
            # that cannot bind never will.
            self.broker.check_arguments(actor, message.args, message.kwargs)
        except TypeError as exc:
            self._reject(message_id, token, f"undecodable message: arguments do not fit {actor.actor_name}: {exc}")
            return None
        # Retries decides from options.retries; the table's attempt count is the truth
        # (it includes attempts lost to a crash), so the message follows it.
        message.options["retries"] = row["attempt"]
        message.options[claims.TOKEN_OPTION] = token
        self.broker.inflight[message_id] = Claim(
            message_id=message_id, token=token, queue_name=self.queue_name, actor_name=message.actor_name,
            attempt=row["attempt"], tenant_id=row["tenant_id"], digest=codec.args_digest(data),
            claimed_mono=claimed_mono, confirm_start=bool(row.get("confirm_start")))
        self.mine.add(message_id)
        return ClaimedMessage(message)

    def _reject(self, message_id: str, token: int, reason: str) -> None:
        log.error("job_rejected", job_id=message_id, queue=self.queue_name, reason=reason)
        self.broker.finisher.submit("reject", {"message_id": message_id, "token": token,
                                               "reason": codec.storable(reason[:2000])})

    def _unknown_actor(self, row: dict, token: int) -> None:
        """A newer release may be rolling out: leave the job to a worker that knows the actor,
        until the grace (from enqueue) is over; then it is dead with the reason."""
        message_id, actor_name = str(row["message_id"]), row["actor_name"]
        grace = self.settings.unknown_actor_grace
        waited = float(row["age_seconds"])  # by the database's clock, which wrote enqueued_at
        if waited >= grace:
            self._reject(message_id, token, f"unknown actor {actor_name!r}: no worker of this deployment has known it "
                                     f"within the {grace:g} s grace (LAMPLIGHTER_UNKNOWN_ACTOR_GRACE)")
            return
        delay = min(30.0, max(0.05, grace / 4), max(0.05, grace - waited))
        log.warning("job_left_for_another_worker", job_id=message_id, actor=actor_name,
                    reason="unknown actor", retry_in_s=round(delay, 2))
        self.broker.finisher.submit("defer", {
            "message_id": message_id, "token": token, "delay_seconds": delay,
            "reason": f"unknown actor {actor_name!r}: waiting for a worker that knows it (grace {grace:g} s)"})

    def _wait_for_work(self, timeout: float) -> None:
        """Until an enqueue wake-up this consumer should answer (storage/wakeups.py), or
        ``timeout`` (the poll fallback, also what LAMPLIGHTER_LISTEN=false leaves)."""
        if not self.settings.listen:
            time.sleep(timeout)
            return
        if self.inbox is None:
            self.inbox = self.broker.listener.subscribe(f"dramatiq.{self.queue_name}.enqueue")
        inbox = self.inbox
        deadline = time.monotonic() + timeout
        standing_in: dict[str, float] = {}  # tickets this consumer answers if nobody else does
        while True:
            due = min(standing_in.values(), default=deadline)
            if not inbox.payloads:
                inbox.arrived.wait(max(0.0, min(due, deadline) - time.monotonic()))
            notes = inbox.drain()
            place = self.broker.places.get(self.queue_name)
            wake_now = False
            for payload in notes:
                wake = wakeups.read(payload, place, self.settings.claim_batch)
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

    def _announcement(self, tickets: list[str]) -> dict:
        return {"channel": f"dramatiq.{self.queue_name}.enqueue",
                "payloads": [wakeups.announcement(ticket) for ticket in tickets[:20]]}

    def _announce(self, tickets: list[str]) -> None:
        """Tell the consumers standing in for the tickets this one answered that it did."""
        shared = self.broker.claim_conn
        with shared as conn:
            try:
                query_module.execute(conn.cursor(), "jobs", "job_announce", self._announcement(tickets),
                                     prepare=self.settings.prepared_statements)
            except Exception as exc:
                if not disconnected(exc):
                    raise
                shared.broken(exc)  # the others stand in after their stagger: nothing is lost

    def ack(self, message):
        self.broker.finish(message, failed=False)

    def nack(self, message):
        self.broker.finish(message, failed=True)

    def requeue(self, messages: Iterable[MessageProxy]):
        """dramatiq hands back messages it will not run (shutdown, consumer restart)."""
        for message in messages:
            claim = claims.of(self.broker.inflight, message)
            if claim is None:
                continue  # a stale copy: its claim was given up already
            self.broker.inflight.pop(message.message_id, None)
            self.released(message.message_id)
            if self.broker.finisher is not None and claim.give_up():
                self.broker.finisher.submit("release", {"message_id": claim.message_id, "token": claim.token})

    def close(self):
        self.requeue(list(self.buffer))
        self.buffer.clear()
        if self.broker.consumers.get(self.queue_name) is self:
            del self.broker.consumers[self.queue_name]
        if self.inbox is not None:
            self.broker.listener.unsubscribe(self.inbox)
            self.inbox = None

