"""The job history as alerts.failed_jobs reads it (queries in sql/job_alerts.sql)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner

execute = runner("job_alerts")


@dataclass(frozen=True)
class FinishedAttempt:
    id: int
    job_id: str
    actor_name: str
    outcome: str
    error_type: str | None
    finished_at: datetime


def history_after(after_id: int, *, settle_seconds: float, limit: int) -> list[FinishedAttempt]:
    return [FinishedAttempt(**row) for row in rows(execute(
        "job_alerts_history_after", {"after_id": after_id, "settle_seconds": settle_seconds, "limit": limit}))]


def start_position(lookback_seconds: float) -> int:
    return execute("job_alerts_start_position", {"lookback_seconds": lookback_seconds}).fetchone()[0]


def failures_in_window(window_seconds: float) -> dict[str, int]:
    return {name: count for name, count in execute("job_alerts_failures_in_window",
                                                   {"window_seconds": window_seconds}).fetchall()}
