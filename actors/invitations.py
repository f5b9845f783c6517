"""Invitation actors: thin transport over domain.invitations.

Schedule (declared with the scheduler): invitations.prune_expired daily at 03:00 UTC.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import invitations
from storage import settings as settings_module
from storage.clock import SystemClock


@dramatiq.actor(actor_name="invitations.prune_expired", queue_name="maintenance", priority=50,
                time_limit=30 * 60_000, max_retries=3, periodic=cron("0 3 * * *"))
def prune_expired(batch_size: int = 5000) -> dict:
    return invitations.prune_expired(SystemClock(settings_module.get().clock_offset), batch_size=batch_size)
