"""Invitations to join a family/organisation (queries in sql/invitations.sql)."""
from __future__ import annotations

from datetime import datetime

from storage.jobs import execute
from storage.queries import queries

SQL = queries("invitations")


def delete_expired_batch(cutoff: datetime, *, batch_size: int) -> int:
    """Delete up to ``batch_size`` invitations with status expired and expires_at before
    ``cutoff``, in one short transaction; returns the count."""
    return execute("invitation_delete_expired_batch", {"cutoff": cutoff, "batch_size": batch_size}, sql=SQL).rowcount
