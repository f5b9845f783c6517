"""The file index of an integration: the provider's file metadata (name, path, size, mime type,
modified time, provider id) kept in lamplighter.integration_files (README "Cloud integrations").

A *pass* lists the provider's files page by page. Each page is stored with the cursor of the
next one in one transaction, so a run stopped anywhere resumes at the first page it did not
store. Every file a page holds is marked with the pass's number; when the last page is in, the
files an earlier pass saw and this one did not are gone at the provider, and go here too.

A run is bounded (``index_pages_per_run`` pages) and queues its own continuation. A provider
that asks to slow down (429, with or without Retry-After) or is unavailable pauses this
integration's pass: the continuation is queued for later and the run ends, so the queue and
the other integrations go on. The continuation is queued under the integration's unique key
from inside the running job (the engine hands the key over).
"""
from __future__ import annotations

import structlog

from domain.integrations import Jobs, ProviderFor
from domain.outcomes import PermanentFailure, RetryLater
from domain.retention import until_done
from storage import integrations as rows
from storage.settings import IntegrationSettings

log = structlog.get_logger("lamplighter.integrations")

# How long a pass pauses when the provider gave no Retry-After.
DEFAULT_PAUSE = 60.0
DELETE_BATCH = 5000


def index_files(integration_id: int, *, provider_for: ProviderFor, jobs: Jobs, settings: IntegrationSettings,
                max_pages: int | None = None) -> dict:
    """One bounded run of the integration's current pass (or a new one). Returns the counts."""
    row = rows.get(integration_id)
    if row is None or row.status != "active":
        return {"outcome": "skipped", "status": row.status if row else "missing"}
    context = {"integration_id": row.id, "tenant_id": row.tenant_id}
    resuming = row.index_cursor is not None
    index_pass = row.index_pass if resuming else row.index_pass + 1
    cursor = row.index_cursor
    provider = provider_for(row.provider_id)
    access_token = rows.reveal(row.access_token)
    pages = stored = 0
    for _ in range(max_pages or settings.index_pages_per_run):
        try:
            page = provider.list_files(access_token, cursor, settings.index_page_size)
        except RetryLater as exc:
            pause = DEFAULT_PAUSE if exc.delay is None else exc.delay
            jobs.index_files(row.id, tenant_id=row.tenant_id, delay=pause)
            log.warning("integration_index_paused", error=str(exc), resume_in_s=round(pause, 1), pages=pages, **context)
            return {"outcome": "paused", "pass": index_pass, "pages": pages, "files": stored, "resume_in": pause}
        except PermanentFailure as exc:  # recorded; the next sweep (or a health check) takes it up
            log.error("integration_index_failed", error=str(exc), pages=pages, **context)
            return {"outcome": "error", "pass": index_pass, "pages": pages, "files": stored}
        rows.store_page(row.id, index_pass=index_pass, files=page.files, next_cursor=page.next_cursor)
        pages += 1
        stored += len(page.files)
        if page.next_cursor is None:
            deleted, _ = until_done(lambda: rows.delete_unseen_batch(row.id, index_pass=index_pass,
                                                                     batch_size=DELETE_BATCH), 10_000)
            rows.finish_pass(row.id, index_pass=index_pass)
            log.info("integration_indexed", index_pass=index_pass, pages=pages, files=stored, deleted=deleted,
                     resumed=resuming, **context)
            return {"outcome": "indexed", "pass": index_pass, "pages": pages, "files": stored, "deleted": deleted}
        cursor = page.next_cursor
    jobs.index_files(row.id, tenant_id=row.tenant_id)
    log.info("integration_index_continues", index_pass=index_pass, pages=pages, files=stored, **context)
    return {"outcome": "continues", "pass": index_pass, "pages": pages, "files": stored}
