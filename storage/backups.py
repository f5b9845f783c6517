"""Backup records (queries in sql/backups.sql; rules in domain/backups.py; the tools in
storage/dumps.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner

execute = runner("backups")


@dataclass(frozen=True)
class Backup:
    id: int
    file_key: str | None
    status: str  # running | failed | dumped | verified | unverified | deleted
    started_at: datetime
    finished_at: datetime | None
    verified_at: datetime | None
    size_bytes: int | None
    sha256: str | None
    server_version: str | None
    pg_dump_version: str | None
    row_counts: dict | None
    error: str | None


def start(*, abandoned_seconds: float) -> tuple[int, datetime, int]:
    """A new running attempt: its id, start time, and how many abandoned ones were marked failed."""
    [row] = rows(execute("backup_start", {"abandoned_seconds": abandoned_seconds}))
    return row["id"], row["started_at"], row["abandoned"]


def dumped(backup_id: int, *, file_key: str, size_bytes: int, sha256: str, server_version: str,
           pg_dump_version: str, row_counts: dict) -> None:
    execute("backup_dumped", {"id": backup_id, "file_key": file_key, "size_bytes": size_bytes, "sha256": sha256,
                              "server_version": server_version, "pg_dump_version": pg_dump_version,
                              "row_counts": json.dumps(row_counts)})


def failed(backup_id: int, *, error: str) -> None:
    execute("backup_failed", {"id": backup_id, "error": error[:2000]})


def checked(backup_id: int, *, ok: bool, error: str | None = None) -> None:
    execute("backup_checked", {"id": backup_id, "ok": ok, "error": (error or "")[:2000]})


def deleted(backup_id: int) -> None:
    execute("backup_deleted", {"id": backup_id})


def get(backup_id: int) -> Backup | None:
    found = rows(execute("backup_get", {"id": backup_id}))
    return Backup(**found[0]) if found else None


def list_backups(*, limit: int = 100, include_deleted: bool = False) -> list[Backup]:
    return [Backup(**row) for row in rows(execute("backup_list", {"limit": limit,
                                                                  "include_deleted": include_deleted}))]
