"""Signed webhooks: a tenant's endpoints, the events it publishes, and their deliveries.

:func:`publish` records an event and one pending delivery per enabled endpoint that takes its
type, and queues each delivery through the ``send`` port (the actor side adds the endpoint's
concurrency key) in the same transaction. :func:`deliver` makes one attempt: it signs the event
(domain/webhook_signatures.py: Standard Webhooks, plus the older ``X-Webhook-Signature`` for
endpoints that ask for it) and posts it through the ``post`` port (actors/outbound.py: timeouts,
bounded responses, the SSRF guard; no redirect followed).

* Only a 2xx is a success. 410 Gone disables the endpoint at once; every other answer (a 3xx
  included: it is not followed), a network error or a refused address is a failed attempt.
* Attempts: now, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
  (:data:`RETRY_SCHEDULE`, each spread by up to ±10%); a ``Retry-After`` asking for longer wins.
  The delay goes to the job as ``RetryLater(delay=...)`` and into the row's next_attempt_at.
* Out of attempts, or on 410: the delivery fails, the endpoint is disabled, its other pending
  deliveries are cancelled and the tenant's owners are notified once (through the outbox).
"""
from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from typing import Callable
from urllib.parse import urlsplit

import structlog

from domain import audit, tenants
from domain import webhook_signatures as signatures
from domain.errors import InvalidInput, NotFound
from domain.outcomes import JobOutcome, PermanentFailure, RetryLater, parse_retry_after
from storage import webhooks as webhook_rows
from storage.queries import transaction
from storage.tenants import TenantScope
from storage.webhooks import Attempt, Endpoint

log = structlog.get_logger("lamplighter.webhooks")

RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # seconds after attempt 1, 2, ...
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.1
ROTATION_OVERLAP = timedelta(hours=24)  # an old secret keeps signing beside the new one this long
ERROR_LIMIT = 1000
_EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z0-9_]+)+$")

Send = Callable[[str, list[tuple[int, int]]], None]  # (tenant id, [(delivery id, endpoint id)]): queue their jobs
Post = Callable[[str, bytes, dict], tuple[int, "str | None"]]  # (url, body, headers) -> (status, Retry-After)


def add_endpoint(tenant_id: str, url: str, *, event_types: list[str] = (), legacy_signature: bool = False,
                 by: str) -> tuple[Endpoint, str]:
    """A new endpoint and its secret (``whsec_...``), which is shown to the caller once."""
    tenants.get_tenant(tenant_id)
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook endpoint's URL is http(s)://host/...")
    for event_type in event_types:
        if not _EVENT_TYPE.match(event_type):
            raise InvalidInput(f"event type {event_type!r}: noun first, dotted, lowercase (e.g. document.classified)")
    secret = signatures.new_secret()
    with transaction():
        endpoint = webhook_rows.insert_endpoint(tenant_id=tenant_id, url=url, secret=secret,
                                                event_types=list(event_types), legacy_signature=legacy_signature)
        audit.record(by, "webhook_endpoint.created", target_type="webhook_endpoint", target_id=endpoint.id,
                     tenant_id=tenant_id, details={"host": parts.hostname, "event_types": list(event_types)})
    return endpoint, secret


def rotate_secret(tenant_id: str, endpoint_id: int, *, by: str, overlap: timedelta = ROTATION_OVERLAP) -> str:
    """A new secret; messages carry signatures by both until ``overlap`` has passed."""
    secret = signatures.new_secret()
    with transaction():
        if webhook_rows.rotate_secret(endpoint_id, secret, overlap_seconds=overlap.total_seconds(),
                                      scope=TenantScope.of(tenant_id)) is None:
            raise NotFound(f"tenant {tenant_id!r} has no webhook endpoint {endpoint_id}")
        audit.record(by, "webhook_endpoint.secret_rotated", target_type="webhook_endpoint", target_id=endpoint_id,
                     tenant_id=tenant_id)
    return secret


def enable_endpoint(tenant_id: str, endpoint_id: int, *, by: str) -> Endpoint:
    with transaction():
        endpoint = webhook_rows.enable(endpoint_id, scope=TenantScope.of(tenant_id))
        if endpoint is None:
            raise NotFound(f"tenant {tenant_id!r} has no webhook endpoint {endpoint_id}")
        audit.record(by, "webhook_endpoint.enabled", target_type="webhook_endpoint", target_id=endpoint_id,
                     tenant_id=tenant_id)
    return endpoint


def list_endpoints(tenant_id: str | None) -> list[Endpoint]:
    return webhook_rows.list_endpoints(scope=TenantScope.every() if tenant_id is None else TenantScope.of(tenant_id))


def publish(tenant_id: str, event_type: str, payload: dict | list[dict], *, send: Send) -> list[int]:
    """Record the event (or events: a list of payloads) and queue their deliveries, in the
    caller's transaction; the delivery ids (none when no enabled endpoint of the tenant takes the
    type: then nothing is recorded)."""
    if not _EVENT_TYPE.match(event_type):
        raise InvalidInput(f"event type {event_type!r}: noun first, dotted, lowercase")
    payloads = payload if isinstance(payload, list) else [payload]
    if not payloads:
        return []
    with transaction():
        deliveries = webhook_rows.publish(tenant_id, event_type, payloads)
        if deliveries:
            send(tenant_id, deliveries)
    return [delivery_id for delivery_id, _ in deliveries]


def body(attempt: Attempt) -> bytes:
    """What every attempt of a delivery sends (the same bytes each time)."""
    return json.dumps({"type": attempt.event_type, "timestamp": attempt.event_created_at.isoformat(),
                       "data": attempt.payload}, sort_keys=True, separators=(",", ":")).encode()


def retry_delay(attempts: int, retry_after: float | None, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: the schedule's entry spread
    by ±JITTER, or a Retry-After's (spread up to JITTER later) when that is longer."""
    rng = rng or random
    scheduled = RETRY_SCHEDULE[min(attempts, len(RETRY_SCHEDULE)) - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        return max(scheduled, retry_after * rng.uniform(1.0, 1 + JITTER))
    return scheduled


def deliver(tenant_id: str, delivery_id: int, *, post: Post, rng: random.Random | None = None,
            job_attempt: int | None = None) -> dict[str, int]:
    """One attempt of one delivery of the tenant; counts for the history row, or an outcome.

    ``job_attempt``: which attempt of its job this is. The job can spend attempts the delivery
    does not count (one that failed before its attempt began: a database outage, a crash), so on
    the job's last attempt (``MAX_ATTEMPTS``) a failure ends the delivery as running out of
    attempts does; otherwise the job would go dead and leave the delivery pending for ever."""
    scope = TenantScope.of(tenant_id)
    attempt = webhook_rows.begin_attempt(delivery_id, scope=scope)  # committed before the call
    if attempt is None:
        return {"delivered": 0, "skipped": 1}  # delivered, failed or cancelled meanwhile
    if not attempt.enabled:
        webhook_rows.record(delivery_id, status="cancelled", response_code=None, error="endpoint disabled",
                            next_attempt_at=None, scope=scope)
        return {"delivered": 0, "skipped": 1}
    content = body(attempt)
    headers = signatures.headers(list(attempt.secrets), f"msg_{attempt.event_id}", int(attempt.now.timestamp()),
                                 content, legacy=attempt.legacy_signature)
    status, retry_after, error = None, None, None
    try:
        status, retry_after_header = post(attempt.url, content, headers)
        retry_after = parse_retry_after(retry_after_header, now=attempt.now)
    except JobOutcome as exc:  # network failure, refused address: a failed attempt like any other
        error = str(exc)
        retry_after = exc.delay if isinstance(exc, RetryLater) else None
    if status is not None and 200 <= status < 300:
        webhook_rows.record(delivery_id, status="delivered", response_code=status, error=None, next_attempt_at=None,
                            scope=scope)
        return {"delivered": 1}
    if status is not None:
        error = f"HTTP {status}" + (" (a redirect; not followed)" if 300 <= status < 400 else "")
    if status == 410:
        reason = "410 Gone"
    elif attempt.attempts >= MAX_ATTEMPTS:
        reason = f"{attempt.attempts} attempts failed, the last: {error}"
    elif job_attempt is not None and job_attempt >= MAX_ATTEMPTS:
        reason = (f"its job's last attempt ({job_attempt}) failed after {attempt.attempts} delivery attempts, "
                  f"the last: {error}")
    else:
        reason = None
    if reason is not None:
        with transaction():
            webhook_rows.record(delivery_id, status="failed", response_code=status, error=error[:ERROR_LIMIT],
                                next_attempt_at=None, scope=scope)
            disable_endpoint(tenant_id, attempt.endpoint_id, attempt.url, reason)
        raise PermanentFailure(f"webhook delivery {delivery_id}: {reason}; endpoint {attempt.endpoint_id} disabled")
    delay = retry_delay(attempt.attempts, retry_after, rng)
    webhook_rows.record(delivery_id, status="pending", response_code=status, error=error[:ERROR_LIMIT],
                        next_attempt_at=attempt.now + timedelta(seconds=delay), scope=scope)
    raise RetryLater(f"webhook delivery {delivery_id}, attempt {attempt.attempts}: {error}", delay=delay)


def disable_endpoint(tenant_id: str, endpoint_id: int, url: str, reason: str, *, by: str = "system:webhooks.deliver") -> bool:
    """Disable the endpoint, cancel its pending deliveries and notify the tenant's owners once
    (the notice's dedupe key names the moment it was disabled). False: it was disabled already."""
    from domain.notifications import Recipient, notify

    with transaction():
        disabled = webhook_rows.disable(endpoint_id, reason, scope=TenantScope.of(tenant_id))
        if disabled is None:
            return False
        host = urlsplit(url).hostname or "(invalid URL)"  # a hook's path can be its secret: host only
        audit.record(by, "webhook_endpoint.disabled", target_type="webhook_endpoint", target_id=endpoint_id,
                     tenant_id=tenant_id, details={"reason": reason, "cancelled_deliveries": disabled["cancelled"]})
        notify(Recipient.tenant_owner(tenant_id), kind="webhook.endpoint_disabled", tenant_id=tenant_id,
               dedupe_key=f"webhook_endpoint:{endpoint_id}:disabled:{disabled['disabled_at'].isoformat()}",
               subject=f"Webhook endpoint {endpoint_id} ({host}) was disabled",
               text=(f"Deliveries to webhook endpoint {endpoint_id} at {host} stopped: {reason}. "
                     f"{disabled['cancelled']} queued deliveries were cancelled. Fix the receiver, then enable "
                     f"the endpoint again (lamplighter webhooks enable {tenant_id} {endpoint_id})."))
    log.warning("webhook_endpoint_disabled", tenant_id=tenant_id, endpoint_id=endpoint_id, reason=reason,
                cancelled=disabled["cancelled"])
    return True
