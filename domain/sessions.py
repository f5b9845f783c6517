"""Dashboard sessions: a signed-in user's random session id (``lls_`` and 256 bits in
base64url, for the cookie), stored as its SHA-256 with an expiry. A session ends when it
expires, when its user signs out, is disabled or gets a new password; ``sessions.prune_expired``
deletes expired rows."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from domain import audit, users
from domain import tenants as tenant_rules
from domain.errors import Unauthenticated
from domain.retention import until_done
from domain.scopes import Principal
from storage import sessions as session_rows
from storage.users import User

log = structlog.get_logger("lamplighter.sessions")

PREFIX = "lls_"
LIFETIME = timedelta(hours=12)
_SHAPE = re.compile(r"^lls_[A-Za-z0-9_-]{43}$")
REFUSED = "no such session, or it has ended"


@dataclass(frozen=True)
class StartedSession:
    user: User
    expires_at: datetime
    session_id: str = field(repr=False)  # for the cookie; stored nowhere


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(user: User, *, lifetime: timedelta = LIFETIME, source: str | None = None) -> StartedSession:
    """A session for a user who just signed in (domain.users.sign_in)."""
    session_id = PREFIX + secrets.token_urlsafe(32)
    row = session_rows.insert(session_hash=_hash(session_id), user_id=user.id,
                              ttl_seconds=lifetime.total_seconds(), source_address=audit.check_source(source))
    return StartedSession(user=user, expires_at=row.expires_at, session_id=session_id)


def resolve(session_id: str) -> Principal:
    """The principal of an unexpired session of a user still enabled; Unauthenticated otherwise."""
    if not isinstance(session_id, str) or not _SHAPE.match(session_id):
        raise Unauthenticated(REFUSED)
    found = session_rows.resolve(_hash(session_id))
    if found is None or found.user.disabled:
        raise Unauthenticated(REFUSED)
    status = None
    if found.user.tenant_id is not None:
        status = tenant_rules.effective_status(found.tenant_status, found.tenant_grace_period_ends_at, found.now)
    return users.principal_of(found.user, tenant_status=status)


def end(session_id: str) -> bool:
    """Sign out; False when there was no such session."""
    if not isinstance(session_id, str) or not _SHAPE.match(session_id):
        return False
    return session_rows.delete(_hash(session_id))


def prune_expired(*, batch_size: int = 5000, max_batches: int = 100) -> dict[str, int]:
    """Delete expired sessions in batches."""
    deleted, batches = until_done(lambda: session_rows.prune_expired_batch(batch_size=batch_size),
                                  max_batches)
    if deleted:
        log.info("sessions_pruned", deleted=deleted, batches=batches)
    return {"deleted": deleted, "batches": batches}
