"""`POST /api/jobs` and `POST /api/jobs/batch`: enqueue actors by name over HTTP.

The same path as `lamplighter enqueue` (console/enqueueing.py): the actor is found and its
arguments bound before anything is written (422 with the reason otherwise), then the token's
scope is checked against the job's actor, queue and tenant. The job records the token's id
(``token:<id>``), never the token, as ``enqueued_by``. An ``Idempotency-Key`` header makes a
retried request (same token, same body) return the first one's answer for 24 hours.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from console import enqueueing
from console.web.auth import holding
from console.web.errors import responses
from console.web.models import BatchBody, BatchEnqueued, Enqueued, EnqueueBody
from domain import idempotency, scopes
from domain.errors import Forbidden
from domain.scopes import Principal

router = APIRouter(prefix="/api", tags=["jobs"])

IdempotencyKey = Header(default=None, alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY_LENGTH,
                        description="a retry with the same key and body returns the first answer (kept 24 h)")


def _prepare(body: EnqueueBody, who: Principal) -> enqueueing.PreparedJob:
    tenant = body.tenant_id
    if who.tenant_id is not None:
        if tenant is None:
            tenant = who.tenant_id
        elif tenant != who.tenant_id:
            raise Forbidden(f"this token enqueues jobs of tenant {who.tenant_id!r} only")
    prepared = enqueueing.prepare(enqueueing.JobRequest(
        actor=body.actor, args=body.args, kwargs=body.kwargs, queue=body.queue, delay=body.delay, eta=body.eta,
        priority=body.priority, unique_key=body.unique_key, unique_on_conflict=body.unique_on_conflict,
        tenant_id=tenant, correlation_id=body.correlation_id))
    scopes.authorize(who, "enqueue", tenant_id=tenant, actor=prepared.actor_name, queue=prepared.queue_name)
    return prepared


def _answer(status: int, body: dict, replayed: bool, location: str | None) -> JSONResponse:
    headers = {"Location": location} if location else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


def _once(who: Principal, key: str | None, fingerprint: list, produce):
    if key is None:
        return (*produce(), False)
    return idempotency.once(principal=who.actor, key=key, fingerprint=idempotency.request_hash(fingerprint),
                            produce=produce)


@router.post("/jobs", status_code=201, response_model=Enqueued, summary="Enqueue a job",
             responses={200: {"description": "A job already holding the unique key (ignore policy)",
                              "model": Enqueued},
                        **responses(401, 403, 409, 413, 422, 503)})
async def enqueue_job(body: EnqueueBody, request: Request, who: Principal = Depends(holding("enqueue")),
                      idempotency_key: str | None = IdempotencyKey):
    """Enqueue ``actor`` with ``args`` / ``kwargs``: 201 and ``Location: /api/jobs/{id}``."""

    def work():
        prepared = _prepare(body, who)

        def produce():
            [job_id] = enqueueing.send([prepared], by=who.actor)
            created = job_id == prepared.message.message_id
            return (201 if created else 200), {"id": job_id, "actor": prepared.actor_name,
                                               "queue": prepared.queue_name, "created": created}

        return _once(who, idempotency_key, ["POST /api/jobs", body.model_dump(mode="json")], produce)

    status, answer, replayed = await request.app.state.pool.run(work)
    return _answer(status, answer, replayed, f"/api/jobs/{answer['id']}")


@router.post("/jobs/batch", status_code=201, response_model=BatchEnqueued, summary="Enqueue up to 10,000 jobs",
             responses=responses(401, 403, 409, 413, 422, 503))
async def enqueue_batch(body: BatchBody, request: Request, who: Principal = Depends(holding("enqueue")),
                        idempotency_key: str | None = IdempotencyKey):
    """All or nothing, in one transaction, through the bulk path (COPY for many plain calls of
    one actor). The ids come back in the order of ``jobs``."""

    def work():
        prepared = []
        for index, job in enumerate(body.jobs):
            try:
                prepared.append(_prepare(job, who))
            except enqueueing.EnqueueRefused as exc:
                raise enqueueing.EnqueueRefused(f"jobs[{index}]: {exc}") from None

        def produce():
            return 201, {"ids": enqueueing.send(prepared, by=who.actor)}

        return _once(who, idempotency_key, ["POST /api/jobs/batch", body.model_dump(mode="json")], produce)

    status, answer, replayed = await request.app.state.pool.run(work)
    return _answer(status, answer, replayed, None)
