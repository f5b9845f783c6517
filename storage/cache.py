"""The cache table: key -> JSON value with an optional expiry (federation statements, JWKS...).
Secret values are encrypted by the caller with storage.encryption before they get here."""
from __future__ import annotations

import json
from typing import Any

from storage.queries import queries, rows, runner

SQL = queries("cache")
execute = runner("cache")


def get(key: str) -> Any | None:
    """The value, or None when absent or expired."""
    found = rows(execute("cache_get", {"key": key}))
    return found[0]["value"] if found else None


def put(key: str, value: Any, *, ttl_seconds: float | None = None) -> None:
    execute("cache_put", {"key": key, "value": json.dumps(value), "ttl": ttl_seconds})


def delete(key: str) -> bool:
    return execute("cache_delete", {"key": key}).rowcount == 1


def prune_expired(*, batch_size: int = 5000) -> int:
    """Delete up to ``batch_size`` expired entries; returns the count."""
    return execute("cache_prune_expired", {"batch_size": batch_size}).rowcount
