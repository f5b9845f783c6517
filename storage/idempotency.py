"""Idempotency-Key records of the HTTP API (lamplighter.idempotency_keys): rows by (principal, key)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage.queries import rows, runner

execute = runner("idempotency")


@dataclass(frozen=True)
class KeptAnswer:
    request_hash: str
    status: int | None  # None: the first request with the key has not finished
    response: Any


def claim(*, principal: str, key: str, request_hash: str, ttl_seconds: float) -> bool:
    """Take the key for this request (in the caller's transaction); False when a live record
    exists (read it with :func:`get`)."""
    return execute("idempotency_claim", {"principal": principal, "key": key, "request_hash": request_hash,
                                         "ttl_seconds": ttl_seconds}).fetchone() is not None


def get(*, principal: str, key: str, ttl_seconds: float) -> KeptAnswer | None:
    found = rows(execute("idempotency_get", {"principal": principal, "key": key, "ttl_seconds": ttl_seconds}))
    return KeptAnswer(**found[0]) if found else None


def record(*, principal: str, key: str, status: int, response: Any) -> None:
    execute("idempotency_record", {"principal": principal, "key": key, "status": status,
                                   "response": json.dumps(response)})


def prune_batch(*, ttl_seconds: float, batch_size: int) -> int:
    return execute("idempotency_prune", {"ttl_seconds": ttl_seconds, "batch_size": batch_size}).rowcount
