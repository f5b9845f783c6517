"""API tokens: credentials for services and operators, with scopes, an optional tenant, an
optional expiry, and for the enqueue scope optional limits to listed actors or queues.

A token is ``llt_`` followed by 256 random bits in base64url (43 characters): the prefix lets
secret scanners recognise a leaked one. It is returned once, by :func:`create_token`; the table
keeps its SHA-256 only (a random 256-bit secret needs no slow hash: nobody can guess it), and a
short display prefix to tell tokens apart. Creating and revoking a token are audited; the token
itself appears in no log line, audit row or exception.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import structlog

from domain import audit, scopes
from domain import tenants as tenant_rules
from domain.errors import InvalidInput, NotFound, Unauthenticated
from domain.retention import until_done
from storage import connection
from storage import tokens as token_rows
from storage.tenants import TenantScope
from storage.tokens import Token

log = structlog.get_logger("lamplighter.tokens")

PREFIX = "llt_"
SECRET_BYTES = 32  # 256 bits
_SHAPE = re.compile(r"^llt_[A-Za-z0-9_-]{43}$")
_DISPLAYED = len(PREFIX) + 4
REFUSED = "invalid, revoked or expired API token"
ENDED_RETENTION = timedelta(days=30)  # ended tokens stay listed this long, then tokens.prune_expired deletes them


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: ``secret`` is shown to its creator once and kept nowhere."""

    token: Token
    secret: str = field(repr=False)


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _names(values, what: str) -> list[str] | None:
    if values is None:
        return None
    names = sorted({v.strip() for v in values if isinstance(v, str) and v.strip()})
    if not names:
        raise InvalidInput(f"an enqueue limit to {what} needs at least one name")
    return names


def create_token(*, name: str, scope_names, tenant_id: str | None = None, expires_at: datetime | None = None,
                 expires_in: timedelta | None = None, actors=None, queues=None, owner: str | None = None,
                 by: str, source: str | None = None) -> IssuedToken:
    """A new token with ``scope_names`` (see domain/scopes.py; ``scopes.ROLES[role]`` for a
    role's). ``actors`` / ``queues`` limit the enqueue scope. ``owner`` (default: ``by``) is who
    hears about its expiry."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("a token needs a name of 1 to 200 characters")
    chosen = scopes.check_scopes(scope_names, tenant_id=tenant_id)
    if (actors is not None or queues is not None) and "enqueue" not in chosen:
        raise InvalidInput("actor and queue limits apply to the enqueue scope, which this token does not have")
    if expires_at is not None and expires_in is not None:
        raise InvalidInput("give an expiry as an instant or as a duration, not both")
    if expires_in is not None and expires_in.total_seconds() <= 0:
        raise InvalidInput("a token's lifetime must be positive")
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidInput("an expiry instant needs a time zone")
    if expires_at is not None and expires_at <= datetime.now(timezone.utc):
        raise InvalidInput(f"expiry {expires_at.isoformat()} has passed")
    secret = new_secret()
    with connection.transaction():
        if tenant_id is not None:
            tenant_rules.get_tenant(tenant_id)
        token = token_rows.insert(
            name=name.strip(), secret_hash=secret_hash(secret), display_prefix=secret[:_DISPLAYED],
            scopes=sorted(chosen), actors=_names(actors, "actors"), queues=_names(queues, "queues"),
            tenant_id=tenant_id, owner=owner or by, created_by=by, expires_at=expires_at,
            expires_in_seconds=None if expires_in is None else expires_in.total_seconds())
        audit.record(by, "token.created", target_type="token", target_id=token.id, tenant_id=tenant_id,
                     source=source, details={"name": token.name, "scopes": token.scopes, "actors": token.actors,
                                             "queues": token.queues, "owner": token.owner,
                                             "expires_at": token.expires_at.isoformat() if token.expires_at else None})
    log.info("token_created", token_id=token.id, scopes=token.scopes, tenant_id=tenant_id, by=by)
    return IssuedToken(token=token, secret=secret)


def list_tokens(*, scope: TenantScope) -> list[Token]:
    return token_rows.list_tokens(scope=scope)


def revoke_token(token_id: int, *, scope: TenantScope, by: str, source: str | None = None) -> Token:
    """Revoke now: the token is refused from its next use. Revoking a revoked token changes
    nothing and records nothing."""
    with connection.transaction():
        token = token_rows.revoke(token_id, scope=scope, by=by)
        if token is None:
            existing = token_rows.get(token_id, scope=scope)
            if existing is None:
                raise NotFound(f"no token {token_id}")
            return existing
        audit.record(by, "token.revoked", target_type="token", target_id=token.id, tenant_id=token.tenant_id,
                     source=source, details={"name": token.name})
    log.info("token_revoked", token_id=token.id, by=by)
    return token


def authenticate(secret: str, *, source: str | None = None) -> scopes.Principal:
    """The principal a presented token stands for; raises Unauthenticated for a malformed,
    unknown, revoked or expired one (one message for all: the caller learns nothing more)."""
    if not isinstance(secret, str) or not _SHAPE.match(secret):
        raise Unauthenticated(REFUSED)
    found = token_rows.find_by_hash(secret_hash(secret))
    if found is None:
        log.warning("token_refused", reason="unknown", source=source)
        raise Unauthenticated(REFUSED)
    token = found.token
    reason = ("revoked" if token.revoked_at is not None else
              "expired" if token.expires_at is not None and token.expires_at <= found.now else None)
    if reason:
        log.warning("token_refused", token_id=token.id, reason=reason, source=source)
        raise Unauthenticated(REFUSED)
    status = None
    if token.tenant_id is not None:
        status = tenant_rules.effective_status(found.tenant_status, found.tenant_grace_period_ends_at, found.now)
    return scopes.Principal(
        actor=f"token:{token.id}", scopes=scopes.principal_scopes(token.scopes, token.tenant_id),
        tenant_id=token.tenant_id, tenant_status=status,
        actors=frozenset(token.actors) if token.actors is not None else None,
        queues=frozenset(token.queues) if token.queues is not None else None)


def prune_expired(*, retention: timedelta = ENDED_RETENTION, batch_size: int = 5000,
                  max_batches: int = 100) -> dict[str, int]:
    """Delete tokens that expired or were revoked longer than ``retention`` ago, in batches."""
    deleted, batches = until_done(
        lambda: token_rows.prune_ended_batch(retention_seconds=retention.total_seconds(), batch_size=batch_size),
        max_batches)
    if deleted:
        log.info("tokens_pruned", deleted=deleted, batches=batches)
    return {"deleted": deleted, "batches": batches}
