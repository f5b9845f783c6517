"""Documents' rows (queries in sql/documents.sql; rules in domain/documents.py). Every function
that reads or changes a document takes the tenant scope; see storage/tenants.py."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("documents")
STATUSES = ("pending", "classified", "failed", "dead_lettered", "expired")


@dataclass(frozen=True)
class Document:
    id: int
    tenant_id: str
    name: str
    size_bytes: int
    file_key: str
    sha256: str
    status: str
    classification: str | None
    routing_destination: str | None
    retry_count: int
    last_error: str | None
    retention_until: datetime
    uploaded_by: str
    created_at: datetime
    updated_at: datetime
    classified_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    """A pending document locked for classification, or one past retention (no size, sha256)."""

    id: int
    tenant_id: str
    name: str
    file_key: str
    size_bytes: int = 0
    sha256: str = ""


def insert(*, tenant_id: str, name: str, size_bytes: int, file_key: str, sha256: str, retention_days: int,
           uploaded_by: str) -> Document:
    [row] = rows(execute("document_insert", {
        "tenant_id": tenant_id, "name": name, "size_bytes": size_bytes, "file_key": file_key, "sha256": sha256,
        "retention_days": retention_days, "uploaded_by": uploaded_by}))
    return Document(**row)


def queue_after_upload(tenant_id: str) -> None:
    """The tenant's classification and quota check, queued in the caller's transaction."""
    execute("document_queue_after_upload", {"tenant": tenant_id})


def get(document_id: int, *, scope: TenantScope) -> Document | None:
    found = rows(execute("document_get", scoped(scope, id=document_id)))
    return Document(**found[0]) if found else None


def list_documents(*, scope: TenantScope, status: str | None = None, limit: int = 50) -> list[Document]:
    return [Document(**r) for r in rows(execute("document_list", scoped(scope, status=status, limit=limit)))]


def claim_pending(*, scope: TenantScope, limit: int) -> list[Claimed]:
    """Lock up to ``limit`` pending documents (the caller's transaction holds them)."""
    return [Claimed(**r) for r in rows(execute("document_claim_pending", scoped(scope, limit=limit)))]


def record_classified(results: list[tuple[int, str, str]], *, scope: TenantScope) -> list[int]:
    """(id, classification, destination) of pending documents recorded; the ids changed."""
    if not results:
        return []
    ids, labels, destinations = (list(column) for column in zip(*results))
    return [r["id"] for r in rows(execute("document_record_classified", scoped(
        scope, ids=ids, classifications=labels, destinations=destinations)))]


def record_failed(failures: list[tuple[int, str]], *, scope: TenantScope) -> list[int]:
    """(id, reason) of pending documents that failed; the ids changed."""
    if not failures:
        return []
    ids, errors = (list(column) for column in zip(*failures))
    return [r["id"] for r in rows(execute("document_record_failed", scoped(scope, ids=ids, errors=errors)))]


def retry_failed_batch(*, scope: TenantScope, batch_size: int, max_retries: int) -> list[dict]:
    """One batch of failed documents back to pending, or dead-lettered; [{id, status, retry_count}]."""
    return rows(execute("document_retry_failed_batch", scoped(scope, batch_size=batch_size, max_retries=max_retries)))


def redrive(*, scope: TenantScope, ids: list[int] | None) -> list[dict]:
    """Dead-lettered documents (the listed ones, or all in scope) back to pending; [{id, tenant_id}]."""
    return rows(execute("document_redrive", scoped(scope, ids=ids)))


def claim_expired(*, scope: TenantScope, batch_size: int) -> list[Claimed]:
    return [Claimed(**r) for r in rows(execute("document_claim_expired", scoped(scope, batch_size=batch_size)))]


def mark_expired(document_id: int, *, scope: TenantScope) -> bool:
    return bool(rows(execute("document_mark_expired", scoped(scope, id=document_id))))


def fan_out(actor: str, status: str) -> list[str]:
    """One ``actor`` job per tenant with documents in ``status`` (``past_retention``: due for
    cleanup); the tenants, in order."""
    return [r["tenant_id"] for r in rows(execute("document_fan_out", {"actor": actor, "status": status}))]
