"""Webhook endpoints, events and deliveries (queries in sql/webhooks.sql; rules in
domain/webhooks.py). Endpoint secrets are encrypted here on the way in and decrypted only for
the attempt that signs with them; listings never carry them. Both secret columns are registered
with ``encryption.ENCRYPTED_COLUMNS``, so ``maintenance.rotate_encryption_keys`` re-encrypts them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from storage import encryption
from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("webhooks")
TABLE = "lamplighter.webhook_endpoints"
encryption.ENCRYPTED_COLUMNS.append(encryption.EncryptedColumn(TABLE, "id", "secret"))
encryption.ENCRYPTED_COLUMNS.append(encryption.EncryptedColumn(TABLE, "id", "previous_secret"))


@dataclass(frozen=True)
class Endpoint:
    id: int
    tenant_id: str
    url: str
    event_types: tuple[str, ...]
    legacy_signature: bool
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    rotating_until: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Attempt:
    """One attempt of a pending delivery, with what it sends."""

    id: int
    tenant_id: str
    event_id: int
    endpoint_id: int
    attempts: int  # including this one
    url: str = field(repr=False)  # a hook's path or query can be its secret
    enabled: bool
    secrets: tuple[str, ...] = field(repr=False)  # current first, then one rotating out; never shown
    legacy_signature: bool
    event_type: str
    payload: dict
    event_created_at: datetime
    now: datetime


@dataclass(frozen=True)
class Delivery:
    id: int
    tenant_id: str
    event_id: int
    event_type: str
    endpoint_id: int
    status: str
    attempts: int
    response_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


def _endpoint(row: dict) -> Endpoint:
    return Endpoint(id=row["id"], tenant_id=row["tenant_id"], url=row["url"], event_types=tuple(row["event_types"]),
                    legacy_signature=row["legacy_signature"], enabled=row["enabled"],
                    disabled_reason=row["disabled_reason"], disabled_at=row["disabled_at"],
                    rotating_until=row["previous_secret_expires_at"], created_at=row["created_at"])


def insert_endpoint(*, tenant_id: str, url: str, secret: str, event_types: list[str], legacy_signature: bool) -> Endpoint:
    [row] = rows(execute("webhook_endpoint_insert", {
        "tenant_id": tenant_id, "url": url, "secret": encryption.keyring().encrypt(secret),
        "event_types": list(event_types), "legacy_signature": legacy_signature}))
    return _endpoint(row)


def list_endpoints(*, scope: TenantScope) -> list[Endpoint]:
    return [_endpoint(r) for r in rows(execute("webhook_endpoint_list", scoped(scope)))]


def rotate_secret(endpoint_id: int, secret: str, *, overlap_seconds: float, scope: TenantScope) -> Endpoint | None:
    found = rows(execute("webhook_endpoint_rotate_secret", scoped(
        scope, id=endpoint_id, secret=encryption.keyring().encrypt(secret), overlap_seconds=overlap_seconds)))
    return _endpoint(found[0]) if found else None


def enable(endpoint_id: int, *, scope: TenantScope) -> Endpoint | None:
    found = rows(execute("webhook_endpoint_enable", scoped(scope, id=endpoint_id)))
    return _endpoint(found[0]) if found else None


def disable(endpoint_id: int, reason: str, *, scope: TenantScope) -> dict | None:
    """{id, tenant_id, url, disabled_at, cancelled}, or None when it was not enabled."""
    found = rows(execute("webhook_endpoint_disable", scoped(scope, id=endpoint_id, reason=reason)))
    return found[0] if found else None


def publish(tenant_id: str, event_type: str, payloads: list[dict]) -> list[tuple[int, int]]:
    """Record the events and a pending delivery of each per enabled endpoint of the tenant that
    takes the type; (delivery id, endpoint id) pairs (none: no endpoint takes the type, and
    nothing is recorded)."""
    return [(r["id"], r["endpoint_id"]) for r in rows(execute("webhook_event_publish", scoped(
        TenantScope.of(tenant_id), event_type=event_type, payloads=json.dumps(payloads))))]


def begin_attempt(delivery_id: int, *, scope: TenantScope) -> Attempt | None:
    """The attempt, counted; None when the delivery is not pending (or not this tenant's)."""
    found = rows(execute("webhook_delivery_begin_attempt", scoped(scope, id=delivery_id)))
    if not found:
        return None
    row = found[0]
    ring = encryption.keyring()
    secrets = tuple(ring.decrypt(s) for s in (row.pop("secret"), row.pop("previous_secret")) if s)
    return Attempt(secrets=secrets, **row)


def record(delivery_id: int, *, status: str, response_code: int | None, error: str | None,
           next_attempt_at: datetime | None, scope: TenantScope) -> bool:
    return bool(rows(execute("webhook_delivery_record", scoped(
        scope, id=delivery_id, status=status, response_code=response_code, error=error,
        next_attempt_at=next_attempt_at))))


def list_deliveries(*, scope: TenantScope, status: str | None = None, limit: int = 50) -> list[Delivery]:
    return [Delivery(**r) for r in rows(execute("webhook_delivery_list", scoped(scope, status=status, limit=limit)))]
