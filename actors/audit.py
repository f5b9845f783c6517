"""Audit-log actors: thin transport over domain.audit.

Schedule (declared with the scheduler): audit.create_partitions daily at 00:20 UTC. The release
step creates the same partitions; the daily run keeps them ahead of the calendar between
deploys. A missed run costs nothing: rows of a month without a partition wait in the default
partition and move into their month's when it is created.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import audit


@dramatiq.actor(actor_name="audit.create_partitions", queue_name="maintenance", priority=50,
                time_limit=5 * 60_000, max_retries=3, periodic=cron("20 0 * * *"))
def create_partitions(months_ahead: int = audit.MONTHS_AHEAD) -> dict:
    return {"created": audit.ensure_partitions(months_ahead)}
