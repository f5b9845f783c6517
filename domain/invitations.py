"""Invitations: removing the ones that expired long ago."""
from __future__ import annotations

from datetime import timedelta

import structlog

from storage import invitations as invitation_rows
from storage.clock import Clock

log = structlog.get_logger("lamplighter.invitations")

RETENTION = timedelta(days=30)


def prune_expired(clock: Clock, *, retention: timedelta = RETENTION, batch_size: int = 5000,
                  max_batches: int = 10_000) -> dict[str, int]:
    """Delete invitations with status expired whose expires_at is strictly more than
    ``retention`` before now, batch by batch (each batch its own short transaction). Safe to run
    again. Returns the count deleted."""
    cutoff = clock.now() - retention
    deleted = 0
    for _ in range(max_batches):
        done = invitation_rows.delete_expired_batch(cutoff, batch_size=batch_size)
        deleted += done
        if done < batch_size:
            break
    log.info("invitations_pruned", deleted=deleted, expired_before=cutoff.isoformat())
    return {"deleted": deleted}
