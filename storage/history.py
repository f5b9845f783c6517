"""Job history: one row per attempt (who ran what, when, how long, how it ended, why)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.queries import queries, rows, runner

SQL = queries("history")
execute = runner("history")


@dataclass(frozen=True)
class Attempt:
    attempt: int
    outcome: str
    worker_id: uuid.UUID | None
    started_at: datetime | None
    finished_at: datetime
    duration_ms: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    result_summary: Any
    args_digest: str | None
    tenant_id: str | None = None  # the job's tenant, as the attempt recorded it


def for_job(job_id: uuid.UUID | str) -> list[Attempt]:
    return [Attempt(**row) for row in rows(execute("history_for_job", {"job_id": str(job_id)}))]
