"""Audit-log archival rows (lamplighter.audit_archives, migration 0014) and the month's rows as
the archive reads them (queries in sql/audit_archive.sql; rules in domain/audit_archive.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from storage.queries import rows, runner

execute = runner("audit_archive")


@dataclass(frozen=True)
class Progress:
    month: date
    step: str  # started | exported | verified | detached | done
    data_key: str | None
    manifest_key: str | None
    rows: int | None
    sha256: str | None
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MonthStats:
    rows: int
    id_sum: int
    first_id: int | None
    last_id: int | None
    attached: bool


def progress(month: date) -> Progress | None:
    found = rows(execute("audit_archive_get", {"month": month}))
    return Progress(**found[0]) if found else None


def save(month: date, step: str, *, data_key: str | None = None, manifest_key: str | None = None,
         rows: int | None = None, sha256: str | None = None) -> None:
    if step == "started":
        execute("audit_archive_start", {"month": month})
        return
    execute("audit_archive_save", {"month": month, "step": step, "data_key": data_key, "manifest_key": manifest_key,
                                   "rows": rows, "sha256": sha256})


def months_due(cutoff: date) -> list[date]:
    return [row[0] for row in execute("audit_archive_months_due", {"cutoff": cutoff}).fetchall()]


def default_partition_months(cutoff: date) -> list[date]:
    return [row[0] for row in execute("audit_archive_default_months", {"cutoff": cutoff}).fetchall()]


def stats(month: date) -> MonthStats | None:
    found = rows(execute("audit_archive_stats", {"month": month}))
    if not found:
        return None
    row = found[0]
    return MonthStats(rows=row["rows"], id_sum=int(row["id_sum"]), first_id=row["first_id"], last_id=row["last_id"],
                      attached=row["attached"])


def rows_after(month: date, after_id: int, limit: int) -> list[dict[str, Any]]:
    return rows(execute("audit_archive_rows", {"month": month, "after_id": after_id, "limit": limit}))
