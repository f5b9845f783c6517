"""`GET /api/jobs`, `GET /api/jobs/{id}` and the operator's actions on jobs: retry (optionally
with edited arguments), cancel, discard, and bulk retry of dead jobs by filter.

The actions are the CLI verbs' own functions (console/verbs/jobs.py, storage/jobs.py); each is a
job event, which is a row of the audit log naming the token (``token:<id>``). A token bound to a
tenant sees and acts on that tenant's jobs only; another tenant's job is a 404.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from fastapi import APIRouter, Body, Depends, Query, Request

from console.verbs import jobs as job_verbs
from console.web.auth import client_address, holding
from console.web.errors import ApiError, responses
from console.web.models import (ActionResult, BulkRetried, BulkRetryBody, JobDetail, JobPage, RetryBody, State,
                                detail, summary)
from domain import scopes
from domain.errors import Forbidden
from domain.scopes import Principal
from storage import jobs

router = APIRouter(prefix="/api", tags=["jobs"])


def encode_cursor(listed) -> str:
    text = f"{listed.listed_at.isoformat()}|{listed.job.message_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, job_id = text.split("|", 1)
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError("no zone")
        return at, str(uuid.UUID(job_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "invalid_request", "cursor: not a cursor this API returned") from None


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ApiError(422, "invalid_request", f"{name}: give a time zone (e.g. 2026-12-06T09:00:00Z)")
    return value


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest change first",
            responses=responses(401, 403, 404, 422, 503))
async def list_jobs(request: Request, who: Principal = Depends(holding("read")),
                    state: State | None = None,
                    queue: str | None = Query(default=None, min_length=1, max_length=100),
                    actor: str | None = Query(default=None, min_length=1, max_length=200),
                    tenant: str | None = Query(default=None, min_length=1, max_length=63),
                    error: str | None = Query(default=None, min_length=3, max_length=200,
                                              description="text an attempt's error message contains"),
                    since: datetime | None = Query(default=None, description="the job's time at or after"),
                    until: datetime | None = Query(default=None, description="the job's time before"),
                    limit: int = Query(default=50, ge=1, le=500),
                    cursor: str | None = Query(default=None, max_length=200)):
    """Newest first by each job's time: when it finished, or for a waiting or running job when it
    was enqueued. Filters combine; pages follow ``next_cursor`` (keyset)."""
    after = decode_cursor(cursor) if cursor else None
    since, until = _aware("since", since), _aware("until", until)
    if who.tenant_id is not None:
        scopes.authorize(who, "read", tenant_id=tenant or who.tenant_id)  # another tenant: 404
    scope = scopes.tenant_scope(who)

    def read():
        return jobs.page(scope=scope, states=[state] if state else jobs.STATES, tenant=tenant, actor=actor,
                         queue=queue, error=error, since=since, until=until, after=after, limit=limit + 1)

    found = await request.app.state.pool.run(read)
    more = len(found) > limit
    found = found[:limit]
    return {"jobs": [summary(listed.job) for listed in found],
            "next_cursor": encode_cursor(found[-1]) if more else None}


async def _job_for(request: Request, who: Principal, job_id: uuid.UUID, scope: str):
    """The job, if ``who`` may use ``scope`` on it (404 for another tenant's)."""

    def read():
        job = jobs.get(job_id)
        scopes.authorize(who, scope, tenant_id=job.tenant_id)
        return job

    return await request.app.state.pool.run(read)


@router.get("/jobs/{job_id}", response_model=JobDetail, summary="One job with every attempt (secrets redacted)",
            responses=responses(401, 403, 404, 422, 503))
async def get_job(job_id: uuid.UUID, request: Request, who: Principal = Depends(holding("read"))):
    return detail(await _job_for(request, who, job_id, "read"))


@router.post("/jobs/{job_id}/retry", response_model=ActionResult, summary="Queue a finished job again",
             responses=responses(401, 403, 404, 409, 413, 422, 503))
async def retry_job(job_id: uuid.UUID, request: Request, who: Principal = Depends(holding("operate")),
                    body: RetryBody | None = Body(default=None)):
    """A dead, cancelled or completed job runs again; with ``args`` and/or ``kwargs`` it runs
    with those instead (checked against the actor's signature; the previous ones are recorded)."""
    job = await _job_for(request, who, job_id, "operate")
    edited = body is not None and (body.args is not None or body.kwargs is not None)
    if edited:
        _check_arguments(job.actor_name, body.args or [], body.kwargs or {})

    def act():
        job_verbs.retry_with(str(job_id), args=body.args if edited else None,
                             kwargs=body.kwargs if edited else None, by=who.actor,
                             source=client_address(request))

    await request.app.state.pool.run(act)
    return {"id": job_id, "result": "queued with edited arguments" if edited else "queued"}


def _check_arguments(actor_name: str, args: list, kwargs: dict) -> None:
    from actors import broker

    try:
        actor = broker.get_actor(actor_name)
    except Exception:
        return  # an actor this deployment does not declare: its own workers check
    try:
        broker.check_arguments(actor, tuple(args), kwargs)
    except TypeError as exc:
        raise ApiError(422, "invalid_input", f"arguments do not fit {actor_name}: {exc}") from None


@router.post("/jobs/{job_id}/cancel", response_model=ActionResult, summary="Cancel a job",
             responses=responses(401, 403, 404, 409, 422, 503))
async def cancel_job(job_id: uuid.UUID, request: Request, who: Principal = Depends(holding("operate"))):
    """A waiting job is cancelled at once (``cancelled``); a running one is asked to stop
    (``cancel requested``)."""
    await _job_for(request, who, job_id, "operate")
    result = await request.app.state.pool.run(jobs.cancel, str(job_id), by=who.actor,
                                              source=client_address(request))
    return {"id": job_id, "result": result}


@router.post("/jobs/{job_id}/discard", response_model=ActionResult, summary="Give up on a waiting job",
             responses=responses(401, 403, 404, 409, 422, 503))
async def discard_job(job_id: uuid.UUID, request: Request, who: Principal = Depends(holding("operate"))):
    """A waiting, scheduled or retry-pending job goes to ``dead`` without running again."""
    await _job_for(request, who, job_id, "operate")
    await request.app.state.pool.run(jobs.discard, str(job_id), by=who.actor, source=client_address(request))
    return {"id": job_id, "result": "discarded"}


@router.post("/jobs/retry", response_model=BulkRetried, summary="Bulk retry of dead jobs by filter",
             responses=responses(401, 403, 413, 422, 503))
async def bulk_retry(body: BulkRetryBody, request: Request, who: Principal = Depends(holding("operate"))):
    """Dead jobs matching every given filter (actor, queue, error type), oldest death first, up
    to ``limit``. Spans every tenant: platform tokens only."""
    if who.tenant_id is not None:
        raise Forbidden("a bulk retry spans every tenant: it needs a token bound to no tenant")
    scopes.authorize(who, "operate")
    ids = await request.app.state.pool.run(jobs.requeue_matching, actor=body.actor, queue=body.queue,
                                           error_type=body.error_type, limit=body.limit, by=who.actor,
                                           source=client_address(request))
    return {"ids": ids}
