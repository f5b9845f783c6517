"""Session actors: thin transport over domain.sessions.

Schedule (declared with the scheduler): sessions.prune_expired every 6 hours.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import sessions


@dramatiq.actor(actor_name="sessions.prune_expired", queue_name="maintenance", priority=50,
                time_limit=30 * 60_000, max_retries=3, periodic=cron("40 */6 * * *"))
def prune_expired(batch_size: int = 5000) -> dict:
    return sessions.prune_expired(batch_size=batch_size)
