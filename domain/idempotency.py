"""Idempotency keys: a retried request (same principal, same ``Idempotency-Key``, same body)
gets the first one's answer instead of doing the work again, for 24 hours.

The key is taken in the same transaction as the work (an enqueue): if the work fails, nothing
is kept and a retry does it afresh; two requests racing with one key are serialised by the
table's primary key, the second getting the first's answer once it commits.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any, Callable

import structlog

from domain.errors import Conflict, InvalidInput
from domain.retention import until_done
from storage import connection
from storage import idempotency as key_rows

log = structlog.get_logger("lamplighter.idempotency")

LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class KeyReused(Conflict):
    """The key was used for a different request."""


def request_hash(value: Any) -> str:
    """A fingerprint of a request: its method, path and body as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


def once(*, principal: str, key: str, fingerprint: str,
         produce: Callable[[], tuple[int, Any]]) -> tuple[int, Any, bool]:
    """``produce()`` -> (status, response) run once per (principal, key) within the lifetime;
    returns (status, response, replayed). A retry with another fingerprint raises KeyReused."""
    ttl = LIFETIME.total_seconds()
    check_key(key)
    with connection.transaction():
        if key_rows.claim(principal=principal, key=key, request_hash=fingerprint, ttl_seconds=ttl):
            status, response = produce()
            key_rows.record(principal=principal, key=key, status=status, response=response)
            return status, response, False
        kept = key_rows.get(principal=principal, key=key, ttl_seconds=ttl)
    if kept is None or kept.status is None:
        raise Conflict("a request with this Idempotency-Key is still being answered; retry shortly")
    if kept.request_hash != fingerprint:
        raise KeyReused("this Idempotency-Key was used for a different request within the last 24 hours")
    log.info("idempotent_replay", principal=principal)
    return kept.status, kept.response, True


def prune_expired(*, batch_size: int = 5000, max_batches: int = 100) -> dict[str, int]:
    """Delete keys past their lifetime, in batches."""
    deleted, batches = until_done(
        lambda: key_rows.prune_batch(ttl_seconds=LIFETIME.total_seconds(), batch_size=batch_size), max_batches)
    if deleted:
        log.info("idempotency_keys_pruned", deleted=deleted, batches=batches)
    return {"deleted": deleted, "batches": batches}
