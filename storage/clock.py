"""Time is injectable: one clock port for Python and ``lamplighter.now()`` for SQL.

Every comparison with "now" in SQL goes through ``lamplighter.now()``, which adds the session
setting ``lamplighter.clock_offset`` (seconds) to the transaction time. Python code asks a
:class:`Clock`. ``LAMPLIGHTER_CLOCK_OFFSET`` shifts both, so tests of TTLs and cron ticks move
time instead of waiting for it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""

    def timestamp(self) -> float:
        """now() as epoch seconds."""


@dataclass
class SystemClock:
    offset: float = 0.0  # seconds

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def timestamp(self) -> float:
        """now() as epoch seconds: what the broker records per job (no datetime to build)."""
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class FrozenClock:
    """A clock that moves only when told to; for unit tests of domain rules."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def timestamp(self) -> float:
        return self.current.timestamp()

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


def sql_offset_setting(offset: float) -> str:
    """The session's ``lamplighter.clock_offset`` that makes ``lamplighter.now()`` agree with
    ``SystemClock(offset)``; empty for none (storage/connection.py SETs it after connecting).
    Every digit: ``:g`` kept six, and moved SQL's clock up to a second from Python's."""
    return repr(float(offset)) if offset else ""
