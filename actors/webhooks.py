"""Webhook actors: thin transport over domain.webhooks.

``webhooks.deliver`` uses message retries, on purpose: a delivery works now or later and nobody
acts on each attempt; the delivery row records them. Its ``retry_schedule`` is the Standard
Webhooks one (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h); the domain spreads each
delay by ±10% and honours a longer Retry-After, and passes it as ``RetryLater(delay=...)``. At
most LAMPLIGHTER_WEBHOOKS_CONCURRENCY deliveries per endpoint run at once (a concurrency key per
endpoint, given at enqueue by :func:`queue_deliveries`).
"""
from __future__ import annotations

import threading

import dramatiq

from actors.outbound import Outbound
from domain import webhooks
from storage import settings as settings_module
from storage.engine import current_attempt


@dramatiq.actor(actor_name="webhooks.deliver", queue_name="webhooks", priority=20, time_limit=2 * 60_000,
                max_retries=len(webhooks.RETRY_SCHEDULE), retry_schedule=list(webhooks.RETRY_SCHEDULE))
def deliver(tenant_id: str, delivery_id: int) -> dict:
    return webhooks.deliver(tenant_id, delivery_id, post=post, job_attempt=current_attempt.get())


def post(url: str, body: bytes, headers: dict) -> tuple[int, str | None]:
    """Any answer comes back to the domain to judge (a 3xx is not followed); network failures and
    refused addresses are outcomes."""
    response = _http().post(url, data=body, headers=headers, success=lambda status: True)
    return response.status_code, response.headers.get("Retry-After")


_thread = threading.local()


def _http() -> Outbound:
    """One client per worker thread (requests' sessions are not shared between threads), so a
    receiver's connection is kept alive between deliveries; a new one when the settings change."""
    current = settings_module.get()
    if getattr(_thread, "settings", None) is not current:
        _thread.http, _thread.settings = Outbound(), current
    return _thread.http


def queue_deliveries(tenant_id: str, deliveries: list[tuple[int, int]]) -> None:
    """The send port of domain.webhooks.publish: one job per (delivery, endpoint), limited per
    endpoint, written in one statement in the caller's transaction."""
    limit = settings_module.get().webhooks.concurrency_per_endpoint
    deliver.broker.enqueue_many([
        deliver.message_with_options(args=(tenant_id, delivery_id), tenant_id=tenant_id,
                                     concurrency_key=f"webhook-endpoint:{endpoint_id}", concurrency_limit=limit)
        for delivery_id, endpoint_id in deliveries])


def publish(tenant_id: str, event_type: str, payloads: list[dict]) -> None:
    """The publish port other actors hand their domain (documents' events, a batch at a time)."""
    webhooks.publish(tenant_id, event_type, payloads, send=queue_deliveries)
