"""Audit-log actors: thin transport over domain.audit.

Schedules (declared with the scheduler): audit.create_partitions daily at 00:20 UTC; audit.archive
monthly, on the 1st at 04:00 UTC (domain/audit_archive.py). The release step creates the same
partitions; the daily run keeps them ahead of the calendar between deploys. A missed run costs nothing: rows of a month without a partition wait in the default
partition and move into their month's when it is created.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.files import job_files
from domain import audit, audit_archive


@dramatiq.actor(actor_name="audit.create_partitions", queue_name="maintenance", priority=50,
                time_limit=5 * 60_000, max_retries=3, periodic=cron("20 0 * * *"))
def create_partitions(months_ahead: int = audit.MONTHS_AHEAD) -> dict:
    return {"created": audit.ensure_partitions(months_ahead)}


@dramatiq.actor(actor_name="audit.archive", queue_name="maintenance", priority=50, time_limit=60 * 60_000,
                max_retries=3, concurrency_limit=1, critical=True, periodic=cron("0 4 1 * *"))
def archive(retention_months: int = 12, max_months: int = 3, batch_size: int = 5000) -> dict:
    """Audit months older than ``retention_months`` to the file store, then out of the database.
    Message retries: every step can run again, and a run resumes at the step it stopped before."""
    return audit_archive.archive(job_files(), retention_months=retention_months, max_months=max_months,
                                 batch_size=batch_size)
