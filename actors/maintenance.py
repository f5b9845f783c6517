"""Maintenance actors: thin transport over domain.maintenance."""
from __future__ import annotations

import dramatiq

from domain import maintenance
from storage.clock import SystemClock
from storage import settings as settings_module


@dramatiq.actor(actor_name="maintenance.ping", queue_name="maintenance", priority=0,
                time_limit=60_000, max_retries=3)
def ping(note: str | None = None) -> dict:
    return maintenance.ping(SystemClock(settings_module.get().clock_offset), note)
