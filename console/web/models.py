"""The API's request and response bodies (pydantic models: they are the OpenAPI schema), and how
a stored job becomes its JSON with secrets redacted."""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.logs import REDACTED, redact

State = Literal["queued", "running", "completed", "dead", "cancelled"]
OnConflict = Literal["ignore", "replace", "reschedule_earlier", "reschedule_later"]
MAX_BATCH = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        """Refuse (422) a string PostgreSQL cannot store, anywhere in the body: JSON's \\u0000 and
        lone surrogate escapes decode to text that psycopg2 refused with a ValueError or a
        UnicodeEncodeError when the job was written, a 500."""
        stack = [data]
        while stack:  # a loop, not recursion: arguments may nest as deep as the JSON parser took them
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
                stack.extend(item.keys())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str):
                if "\x00" in item:
                    raise ValueError("text must not contain a NUL character (\\u0000)")
                if not item.isascii():
                    try:
                        item.encode()
                    except UnicodeEncodeError:
                        raise ValueError("text must not contain a lone surrogate (\\ud800-\\udfff)") from None
        return data


class EnqueueBody(Strict):
    """One job: an actor by name with its arguments (JSON values) and options."""

    actor: str = Field(min_length=1, max_length=200, examples=["maintenance.ping"])
    args: list[Any] = Field(default_factory=list, description="positional arguments")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")
    queue: str | None = Field(default=None, max_length=100, description="default: the actor's queue")
    delay: float | None = Field(default=None, ge=0, le=366 * 86400, description="seconds from now; not with eta")
    eta: datetime | None = Field(default=None, description="when it may run, with a time zone; not with delay")
    priority: int | None = Field(default=None, ge=-2**31, le=2**31 - 1, description="lower runs first")
    unique_key: str | None = Field(default=None, min_length=1, max_length=500)
    unique_on_conflict: OnConflict | None = Field(default=None, description="with unique_key; default ignore")
    tenant_id: str | None = Field(default=None, min_length=1, max_length=63,
                                  description="default: a tenant-bound token's tenant")
    correlation_id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("actor", "queue", "unique_key", "tenant_id", "correlation_id")
    @classmethod
    def no_control_characters(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must not contain control characters")
        return value


class BatchBody(Strict):
    jobs: list[EnqueueBody] = Field(min_length=1, max_length=MAX_BATCH)


class Enqueued(BaseModel):
    id: uuid.UUID
    actor: str
    queue: str
    created: bool = Field(description="false when a job holding the same unique key was returned instead")


class BatchEnqueued(BaseModel):
    ids: list[uuid.UUID]


class Attempt(BaseModel):
    attempt: int
    outcome: str
    worker_id: uuid.UUID | None
    started_at: datetime | None
    finished_at: datetime
    duration_ms: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    result_summary: Any = None


class Event(BaseModel):
    at: datetime
    event: str
    by: str | None
    detail: Any = None


class JobSummary(BaseModel):
    id: uuid.UUID
    actor: str
    queue: str
    state: State
    priority: int
    attempt: int
    max_attempts: int | None
    enqueued_at: datetime
    available_at: datetime
    finished_at: datetime | None
    changed_at: datetime
    tenant_id: str | None
    correlation_id: str | None
    enqueued_by: str | None
    last_error: str | None


class JobDetail(JobSummary):
    args: list[Any]
    kwargs: dict[str, Any]
    unique_key: str | None
    concurrency_key: str | None
    cancel_requested: bool
    attempts: list[Attempt]
    events: list[Event]


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class RetryBody(Strict):
    """Run again with these arguments instead (recorded in the job's events)."""

    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


class BulkRetryBody(Strict):
    """Dead jobs matching every given filter are queued again (oldest death first)."""

    actor: str | None = Field(default=None, min_length=1, max_length=200)
    queue: str | None = Field(default=None, min_length=1, max_length=100)
    error_type: str | None = Field(default=None, min_length=1, max_length=200, examples=["TimeLimitExceeded"])
    limit: int = Field(default=1000, ge=1, le=10_000)


class ActionResult(BaseModel):
    id: uuid.UUID
    result: str


class BulkRetried(BaseModel):
    ids: list[uuid.UUID]


# Lamplighter tokens and session ids wherever they appear in text.
_CREDENTIAL = re.compile(r"\bll[ts]_[A-Za-z0-9_-]{20,}")


def redacted(value: Any) -> Any:
    """``value`` for display: values under secret-looking keys, URL passwords, bearer tokens and
    Lamplighter tokens masked (the logs' rule, storage/logs.py)."""
    value = redact(None, None, {"value": value})["value"]
    if isinstance(value, str):
        return _CREDENTIAL.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def summary(job) -> dict:
    return {"id": job.message_id, "actor": job.actor_name, "queue": job.queue_name, "state": job.state,
            "priority": job.priority, "attempt": job.attempt, "max_attempts": job.max_attempts,
            "enqueued_at": job.enqueued_at, "available_at": job.available_at, "finished_at": job.finished_at,
            "changed_at": job.mtime, "tenant_id": job.tenant_id, "correlation_id": job.correlation_id,
            "enqueued_by": job.enqueued_by, "last_error": redacted(job.last_error)}


def detail(job) -> dict:
    attempts = [{"attempt": a.attempt, "outcome": a.outcome, "worker_id": a.worker_id, "started_at": a.started_at,
                 "finished_at": a.finished_at, "duration_ms": a.duration_ms, "error_type": a.error_type,
                 "error_message": redacted(a.error_message), "traceback": redacted(a.traceback),
                 "result_summary": redacted(a.result_summary)} for a in job.attempts]
    events = [{"at": e.at, "event": e.event, "by": e.requested_by, "detail": redacted(e.detail)} for e in job.events]
    return {**summary(job), "args": redacted(job.args), "kwargs": redacted(job.kwargs), "unique_key": job.unique_key,
            "concurrency_key": job.concurrency_key, "cancel_requested": job.cancel_requested,
            "attempts": attempts, "events": events}
