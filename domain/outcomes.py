"""The one outcome vocabulary: how a job ends, as exception classes (README "How a job ends").

A job **succeeds** by returning. Otherwise it raises one of these, from the domain or the actor:

* :class:`RetryLater` — try again later, after ``delay`` seconds if given (e.g. an upstream
  ``Retry-After``), else after the actor's retry schedule; it counts as an attempt.
* :class:`PermanentFailure` — no retry: the job goes straight to ``dead`` with the reason.
* :class:`Cancel` — stop here; the job ends ``cancelled`` (the answer to an operator's cancel
  request, or the job deciding there is nothing left to do).

Any other exception is a failure retried per the actor's policy. Plain Python: the worker
maps these onto dramatiq (actors/middleware.py); the CLI and tests can raise and catch them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime


class JobOutcome(Exception):
    """Base of the outcomes a job raises instead of returning."""


class RetryLater(JobOutcome):
    """Try again later; ``delay`` seconds from now if given. Counts as an attempt."""

    def __init__(self, reason: str = "retry later", *, delay: float | None = None):
        super().__init__(reason)
        if delay is not None and delay < 0:
            raise ValueError("RetryLater delay must be zero or more seconds")
        self.delay = delay

    @classmethod
    def after(cls, retry_after: str | None, reason: str, *, now: datetime | None = None,
              default: float | None = None, cap: float = 86400.0) -> "RetryLater":
        """From an HTTP ``Retry-After`` value: delta-seconds or an HTTP date; capped."""
        return cls(reason, delay=parse_retry_after(retry_after, now=now, default=default, cap=cap))


class PermanentFailure(JobOutcome):
    """Never retried: the job is dead with this reason (bad input, a 4xx from upstream...)."""


class Cancel(JobOutcome):
    """Stop: the job ends ``cancelled`` with this reason, not failed."""

    def __init__(self, reason: str = "cancelled"):
        super().__init__(reason)


def parse_retry_after(value: str | None, *, now: datetime | None = None, default: float | None = None,
                      cap: float = 86400.0) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (RFC 9110: delta-seconds or an
    HTTP date), clamped to [0, cap]; ``default`` when absent or unparseable."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if text.isdigit():
        return min(float(text), cap)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return min(max((when - now).total_seconds(), 0.0), cap)
