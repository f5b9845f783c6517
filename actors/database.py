"""Database maintenance actor: thin transport over domain.optimization.

Schedule (declared with the scheduler): database.optimize weekly, Sunday 05:00 UTC. No message
retries: what gave up this week (a lock it would not wait for) is in the report, and next
week's run tries again.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import optimization
from storage import settings as settings_module
from storage.schedules import schedule


@dramatiq.actor(actor_name="database.optimize", queue_name="maintenance", priority=60, time_limit=4 * 3600_000,
                max_retries=0, periodic=schedule("database.optimize", cron("0 5 * * 0"), overlap="skip"))
def optimize() -> dict:
    ops = settings_module.get().operations
    return optimization.optimize(reindex_ratio=ops.optimize_reindex_ratio, lock_timeout=ops.optimize_lock_timeout)
