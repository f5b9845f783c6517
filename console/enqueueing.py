"""Enqueue an actor by name, with its arguments checked against the actor's signature: the one
path `lamplighter enqueue` and `POST /api/jobs` (and its batch form) share.

A request is first *prepared* (actor found, arguments bound, options turned into a dramatiq
message and a delay), so that the caller can authorize the job's actor, queue and tenant before
anything is written; then *sent*, one job through ``broker.enqueue`` or many through the bulk
path (``broker.send_many`` for plain calls of one actor, ``broker.enqueue_many`` otherwise), in
one transaction.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from domain.errors import InvalidInput


class EnqueueRefused(InvalidInput):
    """The request cannot become a job: unknown actor, arguments that do not bind, a bad option,
    a payload over the size limit. The message says which."""


@dataclass(frozen=True)
class JobRequest:
    actor: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    delay: float | None = None  # seconds from now
    eta: datetime | None = None  # an absolute time (timezone-aware); not with delay
    priority: int | None = None  # lower runs first; default: the actor's
    unique_key: str | None = None
    unique_on_conflict: str | None = None  # ignore | replace | reschedule_earlier | reschedule_later
    tenant_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class PreparedJob:
    message: Any  # dramatiq.Message
    delay_ms: int
    plain: bool  # no job-column options and the actor's own queue: eligible for send_many

    @property
    def actor_name(self) -> str:
        return self.message.actor_name

    @property
    def queue_name(self) -> str:
        return self.message.queue_name


def _broker():
    from actors import broker

    return broker


def prepare(request: JobRequest, *, now: datetime | None = None) -> PreparedJob:
    """The job a request describes; raises EnqueueRefused with the reason."""
    from storage import jobs
    from storage.settings import SettingsError, validate_queue_name

    broker = _broker()
    try:
        actor = broker.get_actor(request.actor)
    except Exception:
        known = ", ".join(sorted(n for n in broker.actors if not n.startswith("tests.")))
        raise EnqueueRefused(f"unknown actor {request.actor!r} (known: {known})") from None
    args, kwargs = tuple(request.args or ()), dict(request.kwargs or {})
    try:
        broker.check_arguments(actor, args, kwargs)
    except TypeError as exc:
        raise EnqueueRefused(f"arguments do not fit {request.actor}: {exc}") from None
    if request.delay is not None and request.eta is not None:
        raise EnqueueRefused("give delay or eta, not both")
    if request.delay is not None and (request.delay < 0 or not math.isfinite(request.delay)):
        raise EnqueueRefused("delay must be zero or more seconds")
    if request.eta is not None and request.eta.tzinfo is None:
        raise EnqueueRefused("eta needs a time zone (e.g. 2026-12-06T09:00:00Z)")
    if request.unique_on_conflict is not None:
        if request.unique_key is None:
            raise EnqueueRefused("unique_on_conflict goes with unique_key")
        if request.unique_on_conflict not in jobs.UNIQUE_POLICIES:
            raise EnqueueRefused(f"unique_on_conflict must be one of {', '.join(jobs.UNIQUE_POLICIES)}")
    if request.queue is not None:
        try:
            validate_queue_name(request.queue)
        except SettingsError as exc:
            raise EnqueueRefused(str(exc)) from None
    options: dict[str, Any] = {}
    for name in ("priority", "unique_key", "unique_on_conflict", "tenant_id", "correlation_id"):
        value = getattr(request, name)
        if value is not None:
            options[name] = value
    message = actor.message_with_options(args=args, kwargs=kwargs, **options)
    if request.queue is not None and request.queue != message.queue_name:
        message = message.copy(queue_name=request.queue)
    delay_ms = int(round((request.delay or 0) * 1000))
    if request.eta is not None:
        if now is None:
            from storage import settings as settings_module
            from storage.clock import SystemClock

            now = SystemClock(settings_module.get().clock_offset).now()
        delay_ms = max(0, math.ceil((request.eta - now).total_seconds() * 1000))
    plain = not options and request.queue in (None, actor.queue_name)
    return PreparedJob(message=message, delay_ms=delay_ms, plain=plain)


def send(prepared: Sequence[PreparedJob], *, by: str) -> list[str]:
    """Enqueue prepared jobs, recording ``by`` as who enqueued them; the job ids in order (a
    unique key already held gives its holder's id). One job takes ``broker.enqueue``; several
    take the bulk path in one transaction (or the caller's)."""
    from storage import connection
    from storage import engine

    broker = _broker()
    token = engine.enqueued_by.set(by)
    try:
        if len(prepared) == 1:
            job = prepared[0]
            return [broker.enqueue(job.message, delay=job.delay_ms or None).message_id]
        ids: list[str | None] = [None] * len(prepared)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, job in enumerate(prepared):
            groups[(job.delay_ms, job.actor_name if job.plain else None)].append(index)
        with connection.transaction():
            for (delay_ms, plain_actor), indexes in groups.items():
                if plain_actor is not None:
                    actor = broker.get_actor(plain_actor)
                    calls = [prepared[i].message.args if not prepared[i].message.kwargs else prepared[i].message.kwargs
                             for i in indexes]
                    if all(not (prepared[i].message.args and prepared[i].message.kwargs) for i in indexes):
                        sent = broker.send_many(actor, calls, delay=delay_ms or None)
                        for i, job_id in zip(indexes, sent):
                            ids[i] = job_id
                        continue
                sent_messages = broker.enqueue_many([prepared[i].message for i in indexes], delay=delay_ms or None)
                for i, message in zip(indexes, sent_messages):
                    ids[i] = message.message_id
        return [str(i) for i in ids]
    except engine.PayloadError as exc:
        raise EnqueueRefused(str(exc)) from None
    finally:
        engine.enqueued_by.reset(token)
