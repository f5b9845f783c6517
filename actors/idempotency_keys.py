"""Idempotency-key actors: thin transport over domain.idempotency.

Schedule (declared with the scheduler): idempotency_keys.prune_expired hourly.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import idempotency


@dramatiq.actor(actor_name="idempotency_keys.prune_expired", queue_name="maintenance", priority=50,
                time_limit=30 * 60_000, max_retries=3, periodic=cron("25 * * * *"))
def prune_expired(batch_size: int = 5000) -> dict:
    """Delete the HTTP API's Idempotency-Key records older than 24 hours."""
    return idempotency.prune_expired(batch_size=batch_size)
