"""API tokens (lamplighter.api_tokens): rows by hash; the token itself never comes here."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("tokens")


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    display_prefix: str
    scopes: list[str]
    actors: list[str] | None
    queues: list[str] | None
    tenant_id: str | None
    owner: str
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class FoundToken:
    """A token found by its hash, as authentication judges it."""

    token: Token
    now: datetime  # the database's
    tenant_status: str | None
    tenant_grace_period_ends_at: datetime | None


def insert(*, name: str, secret_hash: str, display_prefix: str, scopes: list[str], actors: list[str] | None,
           queues: list[str] | None, tenant_id: str | None, owner: str, created_by: str,
           expires_at: datetime | None, expires_in_seconds: float | None) -> Token:
    found = rows(execute("token_insert", {
        "name": name, "secret_hash": secret_hash, "display_prefix": display_prefix, "scopes": scopes,
        "actors": actors, "queues": queues, "tenant_id": tenant_id, "owner": owner, "created_by": created_by,
        "expires_at": expires_at, "expires_in_seconds": expires_in_seconds}))
    return Token(**found[0])


def get(token_id: int, *, scope: TenantScope) -> Token | None:
    found = rows(execute("token_get", scoped(scope, id=token_id)))
    return Token(**found[0]) if found else None


def list_tokens(*, scope: TenantScope) -> list[Token]:
    return [Token(**row) for row in rows(execute("token_list", scoped(scope)))]


def revoke(token_id: int, *, scope: TenantScope, by: str) -> Token | None:
    """The token revoked now; None when there is none in scope or it was already revoked."""
    found = rows(execute("token_revoke", scoped(scope, id=token_id, by=by)))
    return Token(**found[0]) if found else None


def find_by_hash(secret_hash: str) -> FoundToken | None:
    found = rows(execute("token_authenticate", {"secret_hash": secret_hash}))
    if not found:
        return None
    row = found[0]
    now = row.pop("now")
    status = row.pop("tenant_status")
    grace_end = row.pop("tenant_grace_period_ends_at")
    return FoundToken(Token(**row), now, status, grace_end)


def prune_ended_batch(*, retention_seconds: float, batch_size: int) -> int:
    """Delete one batch of tokens that ended (expired or revoked) before the retention."""
    return execute("token_prune_ended", {"retention_seconds": retention_seconds, "batch_size": batch_size}).rowcount
