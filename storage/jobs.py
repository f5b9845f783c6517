"""Job rows: the one enqueue path, look-ups and operator actions (retry, cancel).

``enqueue_many`` is the only code that writes a job row. It runs on peewee's connection, so
called inside ``database.atomic()`` it joins the caller's transaction: the job becomes visible
to workers only if that transaction commits.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from storage import connection
from storage.queries import queries

SQL = queries("jobs")
STATES = ("queued", "running", "completed", "dead", "cancelled")


class JobNotFound(LookupError):
    pass


class JobStateConflict(RuntimeError):
    """The job is not in a state that allows the requested action."""


@dataclass(frozen=True)
class NewJob:
    """A job as handed to :func:`enqueue_many`; ``message`` is dramatiq's message dict."""

    message_id: str
    queue_name: str
    actor_name: str
    message: dict[str, Any]
    priority: int = 0
    delay_ms: int = 0
    max_attempts: int | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None
    enqueued_by: str | None = None


@dataclass(frozen=True)
class Job:
    message_id: uuid.UUID
    queue_name: str
    actor_name: str
    state: str
    message: dict[str, Any]
    priority: int
    available_at: datetime
    enqueued_at: datetime
    attempt: int
    max_attempts: int | None
    worker_id: uuid.UUID | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    unique_key: str | None
    concurrency_key: str | None
    tenant_id: str | None
    correlation_id: str | None
    enqueued_by: str | None
    last_error: str | None
    cancel_requested: bool
    mtime: datetime
    attempts: tuple = field(default=())

    @property
    def args(self) -> list:
        return list(self.message.get("args", [])) if isinstance(self.message, dict) else []

    @property
    def kwargs(self) -> dict:
        return dict(self.message.get("kwargs", {})) if isinstance(self.message, dict) else {}


def rows(cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def execute(name_or_sql: str, params: dict | None = None, *, conn=None, sql: dict | None = None):
    """Run a named query on ``conn`` (psycopg2) or on peewee's connection (joins its transaction)."""
    text = (sql or SQL)[name_or_sql]
    if conn is not None:
        cursor = conn.cursor()
        cursor.execute(text, params or {})
        return cursor
    db = connection.init_database()
    return db.execute_sql(text, params or {})


def encode_new_jobs(jobs: Sequence[NewJob]) -> str:
    return json.dumps([job.__dict__ for job in jobs], separators=(",", ":"))


def enqueue_many(jobs: Sequence[NewJob], *, conn=None) -> list[uuid.UUID]:
    """Insert (or re-queue, for an existing message_id) ``jobs`` in one statement."""
    if not jobs:
        return []
    cursor = execute("job_insert_many", {"jobs": encode_new_jobs(jobs)}, conn=conn)
    return [row[0] for row in cursor.fetchall()]


def get(job_id: uuid.UUID | str) -> Job:
    from storage import history  # local: history imports this module's helpers

    found = rows(execute("job_get", {"message_id": str(job_id)}))
    if not found:
        raise JobNotFound(f"no job {job_id}")
    return Job(**found[0], attempts=tuple(history.for_job(job_id)))


def list_jobs(*, state: str | None = None, actor: str | None = None, queue: str | None = None,
              limit: int = 50) -> list[Job]:
    found = rows(execute("job_list", {"state": state, "actor": actor, "queue": queue, "limit": limit}))
    return [Job(**row) for row in found]


def requeue(job_id: uuid.UUID | str, *, message: dict | None = None) -> None:
    """Queue a dead, cancelled or completed job again (operator retry)."""
    cursor = execute("job_requeue", {"message_id": str(job_id),
                                     "message": json.dumps(message) if message is not None else None})
    if cursor.fetchone() is None:
        state = get(job_id).state  # raises JobNotFound
        raise JobStateConflict(f"job {job_id} is {state}; only dead, cancelled or completed jobs can be retried")


def cancel(job_id: uuid.UUID | str, *, by: str) -> str:
    """Cancel a waiting job at once; flag a running one. Returns what happened."""
    params = {"message_id": str(job_id), "by": by}
    if execute("job_cancel_waiting", params).fetchone():
        return "cancelled"
    if execute("job_cancel_running", params).fetchone():
        return "cancel requested"
    state = get(job_id).state
    raise JobStateConflict(f"job {job_id} is {state}; only queued or running jobs can be cancelled")


def iter_ids(values: Iterable[str]) -> list[str]:
    return [str(uuid.UUID(v)) for v in values]
