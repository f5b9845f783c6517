"""Document actors: thin transport over domain.documents. Each runs for one tenant
(``tenant_id``); its periodic tick, which has none, queues one job per tenant with work
(storage.documents.fan_out), so no job reads or changes another tenant's documents.

Schedules: documents.classify every minute (and queued by each upload), documents.retry_failed
every 5 minutes, documents.cleanup_expired daily at 04:00 UTC.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.files import job_files
from actors.webhooks import publish
from domain import documents
from storage import documents as document_rows
from storage.schedules import schedule


@dramatiq.actor(actor_name="documents.classify", queue_name="documents", priority=20, time_limit=5 * 60_000,
                max_retries=3, periodic=schedule("documents.classify", cron("* * * * *"), misfire="skip", overlap="skip"))
def classify(tenant_id: str | None = None) -> dict:
    if tenant_id is None:
        return {"tenants": len(document_rows.fan_out("documents.classify", "pending"))}
    return documents.classify_pending(tenant_id, files=job_files(), publish=publish)


@dramatiq.actor(actor_name="documents.retry_failed", queue_name="documents", priority=40, time_limit=5 * 60_000,
                max_retries=3,
                periodic=schedule("documents.retry_failed", cron("*/5 * * * *"), misfire="skip", overlap="skip"))
def retry_failed(tenant_id: str | None = None) -> dict:
    if tenant_id is None:
        return {"tenants": len(document_rows.fan_out("documents.retry_failed", "failed"))}
    return documents.retry_failed(tenant_id, publish=publish)


@dramatiq.actor(actor_name="documents.cleanup_expired", queue_name="documents", priority=50,
                time_limit=30 * 60_000, max_retries=3, periodic=cron("0 4 * * *"))
def cleanup_expired(tenant_id: str | None = None) -> dict:
    if tenant_id is None:
        return {"tenants": len(document_rows.fan_out("documents.cleanup_expired", "past_retention"))}
    return documents.cleanup_expired(tenant_id, files=job_files(), publish=publish)
