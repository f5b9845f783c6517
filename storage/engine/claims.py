"""What this process holds: a claimed job, from its claim until its end is handed to the
finisher."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

@dataclass
class Claim:
    """A job this process has claimed and not yet finished."""

    message_id: str
    queue_name: str
    actor_name: str
    attempt: int  # attempts started before this claim
    tenant_id: str | None
    digest: str
    started_at: float | None = None  # epoch seconds, by the broker's clock
    started_mono: float | None = None
    retry_delay_ms: int | None = None
    result: Any = None
    verdict: str | None = None  # dead | cancelled | handback, from the Retries middleware
    thread: threading.Thread | None = None

    @property
    def current_attempt(self) -> int:
        return self.attempt + 1

