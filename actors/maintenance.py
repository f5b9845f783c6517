"""Maintenance actors: thin transport over domain.maintenance."""
from __future__ import annotations

import dramatiq

from domain import maintenance
from storage.clock import SystemClock
from storage import connection, encryption
from storage import settings as settings_module


@dramatiq.actor(actor_name="maintenance.ping", queue_name="maintenance", priority=0,
                time_limit=60_000, max_retries=3)
def ping(note: str | None = None) -> dict:
    return maintenance.ping(SystemClock(settings_module.get().clock_offset), note)


@dramatiq.actor(actor_name="maintenance.rotate_encryption_keys", queue_name="maintenance", priority=50,
                time_limit=30 * 60_000, max_retries=3)
def rotate_encryption_keys(batch_size: int = 500) -> dict:
    ring = encryption.keyring()
    conn = connection.raw_connection("key-rotation")
    try:
        return maintenance.rotate_secrets(
            list(encryption.ENCRYPTED_COLUMNS),
            lambda column: encryption.rotate_batch(conn, column, ring, batch_size=batch_size))
    finally:
        conn.close()
