"""API-token actors: thin transport over domain.tokens.

Schedule (declared with the scheduler): tokens.prune_expired daily at 03:00 UTC.
"""
from __future__ import annotations

from datetime import timedelta

import dramatiq
from periodiq import cron

from domain import tokens


@dramatiq.actor(actor_name="tokens.prune_expired", queue_name="maintenance", priority=50,
                time_limit=30 * 60_000, max_retries=3, periodic=cron("0 3 * * *"))
def prune_expired(retention_days: int = 30, batch_size: int = 5000) -> dict:
    """Delete tokens that expired or were revoked more than ``retention_days`` ago."""
    return tokens.prune_expired(retention=timedelta(days=retention_days), batch_size=batch_size)
