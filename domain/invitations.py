"""Invitations: the ones past their expiry become expired, and go 30 days after that.

Plain Python, like domain/retention.py: the batches come in as callables, each changing one
batch in its own short transaction and returning how many rows it changed. The database's clock
decides what is past expiry and what is old enough (storage/sql/invitations.sql).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

import structlog

from domain.retention import until_done

log = structlog.get_logger("lamplighter.invitations")

# An expired invitation stays visible this long, so the invitee and the inviter can see why
# the link no longer works.
RETENTION = timedelta(days=30)


def expire_and_prune(expire_batch: Callable[[], int], delete_batch: Callable[[timedelta], int], *,
                     retention: timedelta = RETENTION, max_batches: int = 10_000) -> dict[str, int]:
    """Mark pending invitations past expiry as expired, then delete those expired longer than
    ``retention`` ago, each step batch by batch until a batch finds nothing (or ``max_batches``,
    so one run stays bounded; the next run continues). Safe to run again. Returns the counts,
    for the job's history row."""
    expired, _ = until_done(expire_batch, max_batches)
    deleted, _ = until_done(lambda: delete_batch(retention), max_batches)
    log.info("invitations_pruned", expired=expired, deleted=deleted, retention_days=retention / timedelta(days=1))
    return {"expired": expired, "deleted": deleted}

