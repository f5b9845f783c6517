"""The audit log (lamplighter.audit_log): insert, list, and its monthly partitions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("audit")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    tenant_id: str | None
    source_address: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Partition:
    name: str
    bounds: str | None  # FOR VALUES FROM (...) TO (...), DEFAULT; None once detached
    estimated_rows: int
    attached: bool


def insert(*, actor: str, action: str, target_type: str | None, target_id: str | None, tenant_id: str | None,
           source_address: str | None, details: dict[str, Any]) -> int:
    return execute("audit_insert", {
        "actor": actor, "action": action, "target_type": target_type, "target_id": target_id,
        "tenant_id": tenant_id, "source_address": source_address, "details": json.dumps(details)}).fetchone()[0]


def entries(*, scope: TenantScope, actor: str | None = None, action: str | None = None,
            since: datetime | None = None, limit: int = 100) -> list[AuditEntry]:
    found = rows(execute("audit_list", scoped(scope, actor=actor, action=action, since=since, limit=limit)))
    return [AuditEntry(**row) for row in found]


def ensure_partitions(months_ahead: int) -> list[tuple[str, int]]:
    """Create this month's partition and the next ``months_ahead``; (name, rows moved from the
    default partition) of those created."""
    return [tuple(row) for row in execute("audit_partitions_ensure", {"months_ahead": months_ahead}).fetchall()]


def create_partition(month: date) -> tuple[str, bool, int]:
    """(name, created, rows moved from the default partition) for the month of ``month``."""
    return tuple(execute("audit_partition_create", {"month": month}).fetchone())


def detach_partition(month: date) -> str | None:
    """Detach a past month's partition; its table's name, or None when there was none."""
    return execute("audit_partition_detach", {"month": month}).fetchone()[0]


def partitions() -> list[Partition]:
    return [Partition(**row) for row in rows(execute("audit_partitions"))]


def drop_archived(month: date) -> str | None:
    """Drop a detached month's table; its name, or None when there was none."""
    return execute("audit_archive_drop", {"month": month}).fetchone()[0]


def current_month() -> date:
    """The first day of the month (UTC) the log is writing now, by the database's clock."""
    return execute("audit_current_month").fetchone()[0]
