"""License actor: thin transport over domain.licenses.

Schedule (declared with the scheduler): licenses.check daily at 08:00 UTC. Message retries (3):
the check is safe to run again (notices are once by their dedupe keys, alerts count repeats).
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import licenses


@dramatiq.actor(actor_name="licenses.check", queue_name="maintenance", priority=30, time_limit=10 * 60_000,
                max_retries=3, periodic=cron("0 8 * * *"))
def check() -> dict:
    return licenses.check()
