"""Invitation actors: thin transport over domain.invitations.

Schedule (declared with the scheduler): invitations.prune_expired daily at 03:00 UTC.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import invitations
from storage import invitations as invitation_rows


@dramatiq.actor(actor_name="invitations.prune_expired", queue_name="maintenance", priority=50,
                time_limit=30 * 60_000, max_retries=3, periodic=cron("0 3 * * *"))
def prune_expired(batch_size: int = 5000) -> dict:
    return invitations.expire_and_prune(
        lambda: invitation_rows.expire_batch(batch_size=batch_size),
        lambda retention: invitation_rows.delete_expired_batch(retention_seconds=retention.total_seconds(),
                                                               batch_size=batch_size))
