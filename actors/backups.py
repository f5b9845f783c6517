"""Backup actor: thin transport over domain.backups.

Schedule (declared with the scheduler): backups.create daily at 04:30 UTC, overlapping runs
skipped. Message retries (3, dramatiq's backoff): a dump cut off by a deploy's SIGTERM, or one
that failed, is tried again; it is never stored or marked good. A dump whose restore check
fails is stored but unverified, and the job goes dead at once (retrying would not change it).
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.files import job_files
from domain import backups
from domain.outcomes import PermanentFailure, RetryLater
from storage import connection
from storage import settings as settings_module
from storage.schedules import schedule


@dramatiq.actor(actor_name="backups.create", queue_name="maintenance", priority=40, time_limit=3 * 3600_000,
                max_retries=3, periodic=schedule("backups.create", cron("30 4 * * *"), overlap="skip"))
def create() -> dict:
    files = job_files()
    try:
        return backups.create(files, backups.config(settings_module.get(), connection.database_url()))
    except backups.BackupInterrupted as exc:
        raise RetryLater(str(exc), delay=60) from None
    except backups.BackupCheckFailed as exc:
        raise PermanentFailure(str(exc)) from None
