"""Dashboard sessions (lamplighter.sessions), by the hash of their id."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner
from storage.users import User

execute = runner("sessions")


@dataclass(frozen=True)
class Session:
    id: int
    user_id: int
    expires_at: datetime


@dataclass(frozen=True)
class ResolvedSession:
    session_id: int
    expires_at: datetime
    now: datetime  # the database's
    user: User
    tenant_status: str | None
    tenant_grace_period_ends_at: datetime | None


def insert(*, session_hash: str, user_id: int, ttl_seconds: float, source_address: str | None) -> Session:
    found = rows(execute("session_insert", {"session_hash": session_hash, "user_id": user_id,
                                            "ttl_seconds": ttl_seconds, "source_address": source_address}))
    return Session(**found[0])


def resolve(session_hash: str) -> ResolvedSession | None:
    """The unexpired session with this hash, and its user; None when there is none."""
    found = rows(execute("session_resolve", {"session_hash": session_hash}))
    if not found:
        return None
    row = found[0]
    head = {key: row.pop(key) for key in ("session_id", "expires_at", "now", "tenant_status",
                                          "tenant_grace_period_ends_at")}
    return ResolvedSession(user=User(**row), **head)


def delete(session_hash: str) -> bool:
    return execute("session_delete", {"session_hash": session_hash}).rowcount > 0


def prune_expired_batch(*, batch_size: int) -> int:
    return execute("session_prune_expired", {"batch_size": batch_size}).rowcount
