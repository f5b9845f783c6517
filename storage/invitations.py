"""Invitations to join a family/organisation (queries in sql/invitations.sql)."""
from __future__ import annotations

from storage.queries import queries, runner

SQL = queries("invitations")
execute = runner("invitations")


def expire_batch(*, batch_size: int) -> int:
    """Mark up to ``batch_size`` pending invitations past their expires_at as expired, in one
    short transaction; returns the count."""
    return execute("invitation_expire_batch", {"batch_size": batch_size}).rowcount


def delete_expired_batch(*, retention_seconds: float, batch_size: int) -> int:
    """Delete up to ``batch_size`` invitations expired more than ``retention_seconds`` ago (by
    the database's clock), in one short transaction; returns the count."""
    return execute("invitation_delete_expired_batch",
                   {"retention_seconds": retention_seconds, "batch_size": batch_size}).rowcount
