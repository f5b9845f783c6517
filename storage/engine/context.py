"""Per-thread and per-process context of the job being sent or run: who enqueues (the job
row's enqueued_by), and which job and attempt this thread runs (for successors, cancel requests
and actors that count their own tries)."""
from __future__ import annotations

import os
import socket
from contextvars import ContextVar

from storage import jobs

# Who is enqueueing, recorded in the job row's enqueued_by: set by the CLI ("cli:user@host"),
# the scheduler ("cron:<key>@<time>"), the API ("api:<token>"); inside a job, "job:<id>".
enqueued_by: ContextVar[str | None] = ContextVar("enqueued_by", default=None)
# The job this thread is running, if any: a job that enqueues its own successor under the same
# unique key gives the key up to it; actors read it to poll for a cancel request.
current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)
# Which attempt of it (1 for the first run; counted by the table, lost attempts included): an actor
# that keeps its own count of tries (webhook deliveries) reads it to know its job's last attempt.
current_attempt: ContextVar[int | None] = ContextVar("current_attempt", default=None)


def cancel_requested() -> bool:
    """For actors, between steps: has an operator asked the job this thread runs to stop? If
    so, the actor raises domain.outcomes.Cancel (the attempt ends cancelled). One query."""
    job_id = current_job_id.get()
    return job_id is not None and jobs.cancel_requested(job_id)


def default_provenance() -> str:
    global _provenance
    pid = os.getpid()
    if _provenance is None or _provenance[0] != pid:  # per process: a fork gets its own
        _provenance = (pid, f"python:{socket.gethostname()}:{pid}")
    return _provenance[1]


_provenance: tuple[int, str] | None = None

