"""Documents: upload, classification with routing, retries with a dead-letter state, and
retention cleanup. Every function works on one tenant's rows (a TenantScope of that tenant);
the periodic ticks fan out to one job per tenant (storage.documents.fan_out).

    pending --classify--> classified                       (documents.classify)
       '-- the classifier fails --> failed --retry_count < 3--> pending    (documents.retry_failed)
                                       '-- retry_count = 3 --> dead_lettered --redrive--> pending
    past retention_until --file deleted, then marked--> expired          (documents.cleanup_expired)

Ports: ``files`` is the file store (actors/files.py's JobFiles, or storage.files' store from the
CLI); ``publish(tenant_id, event_type, payloads)`` sends webhook events (domain/webhooks.py).
"""
from __future__ import annotations

import re
import uuid
from typing import Callable, Protocol

import structlog

from domain import audit, quotas, tenants
from domain.classifier import HEAD_BYTES, Classifier, RuleClassifier, Unclassifiable
from domain.errors import Forbidden, InvalidInput, NotFound
from domain.outcomes import JobOutcome
from domain.retention import until_done
from storage import documents as document_rows
from storage import settings as settings_module
from storage.clock import Clock, SystemClock
from storage.documents import Document
from storage.files import FileMissing
from storage.queries import transaction
from storage.tenants import TenantScope

log = structlog.get_logger("lamplighter.documents")

CLASSIFY_BATCH = 100
CLASSIFY_MAX_BATCHES = 10  # per job: documents uploaded meanwhile are taken too, within a bound
RETRY_BATCH = 50
MAX_RETRIES = 3
CLEANUP_BATCH = 100
ERROR_LIMIT = 1000
MAX_BYTES = 100 * 1024 * 1024  # one upload
_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")

Publish = Callable[[str, str, list[dict]], None]  # (tenant, event type, payloads): webhook events


class Files(Protocol):
    def put(self, key: str, data): ...

    def get(self, key: str) -> bytes: ...

    def stat(self, key: str): ...

    def delete(self, key: str) -> None: ...


def upload(tenant_id: str, name: str, data: bytes, *, files: Files, by: str, clock: Clock | None = None) -> Document:
    """Store ``data`` and record a pending document; its classification and a quota check are
    queued in the same transaction. Refused while the tenant may not upload (domain/tenants.py
    decides) or its uploads are blocked or would pass the quota; nothing is left behind then."""
    tenant = tenants.get_tenant(tenant_id)
    now = (clock or SystemClock(settings_module.get().clock_offset)).now()
    status = tenants.effective_status(tenant.billing_status, tenant.grace_period_ends_at, now)
    if not tenants.may_upload(status):
        raise Forbidden(f"tenant {tenant_id!r} may not upload now (billing status {status})")
    if not isinstance(name, str) or not _NAME.match(name) or not name.strip():
        raise InvalidInput("a document name is 1 to 255 characters, without '/', '\\' or control characters")
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput("a document's content is bytes")
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"a document is at most {MAX_BYTES} bytes")
    quotas.refuse_if_full(tenant_id, len(data))  # before the bytes travel; reserve() below decides for good
    key = f"documents/{tenant_id}/{uuid.uuid4().hex}"
    stored = files.put(key, bytes(data))
    try:
        with transaction():
            quotas.reserve(tenant_id, len(data))
            document = document_rows.insert(
                tenant_id=tenant_id, name=name, size_bytes=len(data), file_key=key, sha256=stored.sha256,
                retention_days=settings_module.get().documents.retention_days, uploaded_by=by)
            document_rows.queue_after_upload(tenant_id)
            audit.record(by, "document.uploaded", target_type="document", target_id=document.id,
                         tenant_id=tenant_id, details={"name": name, "size_bytes": len(data)})
    except BaseException:
        _delete_quietly(files, key)
        raise
    log.info("document_uploaded", tenant_id=tenant_id, document_id=document.id, size_bytes=len(data))
    return document


def classify_pending(tenant_id: str, *, files: Files, classifier: Classifier | None = None,
                     publish: Publish | None = None, batch_size: int = CLASSIFY_BATCH,
                     max_batches: int = CLASSIFY_MAX_BATCHES) -> dict[str, int]:
    """Classify the tenant's pending documents, a batch (locked, SKIP LOCKED) per transaction, so
    two workers never take the same document. A document the classifier cannot read or place is
    ``failed`` with the reason. A job outcome (the file store unreachable) stops the job and
    leaves the batch pending."""
    scope = TenantScope.of(tenant_id)
    classifier = classifier or RuleClassifier()
    counts = {"classified": 0, "failed": 0}

    def one_batch() -> int:
        with transaction():
            batch = document_rows.claim_pending(scope=scope, limit=batch_size)
            results, failures = [], []
            for doc in batch:
                try:
                    result = classifier.classify(doc.name, files.get(doc.file_key)[:HEAD_BYTES])
                except JobOutcome:
                    raise
                except FileMissing:
                    failures.append((doc.id, "the stored file is missing"))
                except Unclassifiable as exc:
                    failures.append((doc.id, f"unclassifiable: {exc}"))
                except Exception as exc:  # a classifier's or the store's error: this document fails
                    failures.append((doc.id, f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]))
                else:
                    results.append((doc, result))
            classified = set(document_rows.record_classified(
                [(doc.id, r.label, r.destination) for doc, r in results], scope=scope))
            counts["failed"] += len(document_rows.record_failed(failures, scope=scope))
            counts["classified"] += len(classified)
            if publish is not None and classified:
                publish(tenant_id, "document.classified", [
                    {"document_id": doc.id, "name": doc.name, "classification": r.label,
                     "routing_destination": r.destination} for doc, r in results if doc.id in classified])
        return len(batch)

    until_done(one_batch, max_batches)
    log.info("documents_classified", tenant_id=tenant_id, **counts)
    return counts


def retry_failed(tenant_id: str, *, publish: Publish | None = None, batch_size: int = RETRY_BATCH,
                 max_batches: int = 1000) -> dict[str, int]:
    """The tenant's failed documents back to pending (retry_count < 3) or to the dead-letter
    state, in batches of ``batch_size``."""
    scope = TenantScope.of(tenant_id)
    counts = {"retried": 0, "dead_lettered": 0}

    def one_batch() -> int:
        with transaction():
            changed = document_rows.retry_failed_batch(scope=scope, batch_size=batch_size, max_retries=MAX_RETRIES)
            dead = [{"document_id": row["id"]} for row in changed if row["status"] == "dead_lettered"]
            counts["dead_lettered"] += len(dead)
            counts["retried"] += len(changed) - len(dead)
            if publish is not None and dead:
                publish(tenant_id, "document.dead_lettered", dead)
        return len(changed)

    until_done(one_batch, max_batches)
    log.info("documents_retried", tenant_id=tenant_id, **counts)
    return counts


def redrive(tenant_id: str, ids: list[int] | None, *, by: str) -> list[int]:
    """Dead-lettered documents of the tenant (the listed ones, or all) back to pending with a
    fresh allowance of retries, their classification queued; audited. Returns their ids."""
    tenants.get_tenant(tenant_id)
    with transaction():
        redriven = [row["id"] for row in document_rows.redrive(scope=TenantScope.of(tenant_id), ids=ids)]
        if ids is not None and set(ids) - set(redriven):
            missing = sorted(set(ids) - set(redriven))
            raise NotFound(f"tenant {tenant_id!r} has no dead-lettered document {', '.join(map(str, missing))}")
        for document_id in redriven:
            audit.record(by, "document.redriven", target_type="document", target_id=document_id, tenant_id=tenant_id)
        if redriven:
            document_rows.queue_after_upload(tenant_id)
    return redriven


def cleanup_expired(tenant_id: str, *, files: Files, publish: Publish | None = None,
                    batch_size: int = CLEANUP_BATCH, max_batches: int = 1000) -> dict[str, int]:
    """The tenant's documents past retention: the stored file deleted, then the document marked
    expired with an audit row, in one transaction per batch that holds the rows. The file goes
    first: a crash after the delete leaves the document unexpired, and the next run finds its
    file missing (logged, not an error) and marks it; the other order would leave files that no
    row names."""
    scope = TenantScope.of(tenant_id)
    counts = {"expired": 0, "files_missing": 0}

    def one_batch() -> int:
        with transaction():
            batch = document_rows.claim_expired(scope=scope, batch_size=batch_size)
            expired = []
            for doc in batch:
                try:
                    files.stat(doc.file_key)  # deleting a missing file succeeds: ask first, to log it
                    files.delete(doc.file_key)
                except FileMissing:
                    counts["files_missing"] += 1
                    log.warning("document_file_missing", tenant_id=tenant_id, document_id=doc.id)
                if document_rows.mark_expired(doc.id, scope=scope):
                    counts["expired"] += 1
                    audit.record("system:documents.cleanup_expired", "document.expired", target_type="document",
                                 target_id=doc.id, tenant_id=tenant_id, details={"name": doc.name})
                    expired.append({"document_id": doc.id})
            if publish is not None and expired:
                publish(tenant_id, "document.expired", expired)
        return len(batch)

    until_done(one_batch, max_batches)
    log.info("documents_expired", tenant_id=tenant_id, **counts)
    return counts


def list_documents(tenant_id: str | None, *, status: str | None = None, limit: int = 50) -> list[Document]:
    if status is not None and status not in document_rows.STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(document_rows.STATUSES)}")
    scope = TenantScope.every() if tenant_id is None else TenantScope.of(tenant_id)
    return document_rows.list_documents(scope=scope, status=status, limit=limit)


def _delete_quietly(files: Files, key: str) -> None:
    try:
        files.delete(key)
    except Exception:  # the upload's own error is the one to report; an orphan file is harmless
        log.warning("document_upload_file_left", key=key)
