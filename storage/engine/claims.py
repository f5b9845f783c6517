"""What this process holds: a claimed job, from its claim until its end is handed to the
finisher, and the one lock that decides whether a claimed job starts here or goes back.

A claimed job waits in dramatiq's work queue until a worker thread takes it. Meanwhile the
consumer may hand it back (it waited while another worker had free threads) or the heartbeat
may find this worker declared dead (the job was rescued and runs elsewhere): whichever comes
first, the thread's start or the give-up, wins, under :data:`lock`.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

# Guards Claim.started_at / Claim.given_up transitions across worker, consumer and heartbeat threads.
lock = threading.Lock()
# The message option that carries the token of the claim a message was handed out by. A job handed
# back and claimed again (by this worker) has a second message in dramatiq's work queue with the
# same id: each message is matched to its own claim, never to the other's.
TOKEN_OPTION = "lamplighter_claim_token"


def of(inflight: dict, message) -> "Claim | None":
    """The claim ``message`` was handed out by, if it is still held here."""
    claim = inflight.get(message.message_id)
    if claim is None or claim.token != message.options.get(TOKEN_OPTION):
        return None
    return claim


def new_token() -> int:
    """A claim's token: 63 random bits (a bigint column), written into every row it takes."""
    return int.from_bytes(os.urandom(8), "big") >> 1


@dataclass
class Claim:
    """A job this process has claimed and not yet finished. Fields other than the result and
    verdict are written by the consumer thread before the job is handed out, then by the
    worker thread that runs it, under :data:`lock` where another thread may race."""

    message_id: str
    token: int  # the claim's token: every statement about this job names it
    queue_name: str
    actor_name: str
    attempt: int  # attempts started before this claim
    tenant_id: str | None
    digest: str
    claimed_mono: float = 0.0  # when the claim returned (monotonic)
    # A dead worker's rescue handed it back before without a recorded start (it may have killed
    # that worker as it started): it starts only once its start is committed (lifecycle.py).
    confirm_start: bool = False
    started_at: float | None = None  # epoch seconds, by the broker's clock
    started_mono: float | None = None
    given_up: bool = False  # handed back or fenced before it started: it must not start here
    retry_delay_ms: int | None = None
    result: Any = None
    verdict: str | None = None  # dead | cancelled | handback, from the Retries middleware
    thread: threading.Thread | None = None

    @property
    def current_attempt(self) -> int:
        return self.attempt + 1

    def start(self, started_at: float, started_mono: float) -> bool:
        """The worker thread takes the job: False if it was given up first."""
        with lock:
            if self.given_up:
                return False
            self.started_at, self.started_mono = started_at, started_mono
            return True

    def give_up(self) -> bool:
        """Hand the job back unless a thread has started it: True if it was given up here."""
        with lock:
            if self.started_at is not None or self.given_up:
                return False
            self.given_up = True
            return True
