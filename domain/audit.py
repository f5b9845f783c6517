"""The audit log: one append-only record of what a person or a service did.

A row says who (``actor``: ``user:<id>``, ``token:<id>``, ``cli:<os user>@<host>``,
``system:<job>``, ``worker:<id>``), what (``action``, noun first: ``user.created``,
``token.revoked``, ``job.redriven``), to what (target type and id), in which tenant, from
where (source address), with details (a JSON object). Job events (redrives, cancels, unique-key
conflicts, shutdown hand-backs) are audit rows too: ``lamplighter.job_events`` is a view over
this log (migration 0009).

Details never hold a secret. Whatever a caller passes, a value under a secret-looking key
(password, token, secret, ...) and anything shaped like a Lamplighter token or session id is
replaced by ``[REDACTED]`` before the row is written.

The table is partitioned by month. :func:`ensure_partitions` creates this month's partition and
the next ones (the release step and the daily ``audit.create_partitions`` job call it); a row
whose month has none lands in the default partition and moves into its month's partition when
that is created. :func:`archive_month` detaches a past month, which leaves the log as a table of
its own, to be exported and then dropped (:func:`drop_archived_month`).
"""
from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Any

import structlog

from domain.errors import InvalidInput
from storage import audit as audit_rows
from storage.audit import AuditEntry, Partition
from storage.logs import REDACTED, SECRET_KEY_PATTERN
from storage.tenants import TenantScope

log = structlog.get_logger("lamplighter.audit")

MONTHS_AHEAD = 2  # partitions exist for this month and the next two
_ACTION = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
# A Lamplighter token or session id (domain/tokens.py, domain/sessions.py) wherever it appears.
_CREDENTIAL = re.compile(r"\bll[ts]_[A-Za-z0-9_-]{20,}")
_DETAILS_DEPTH = 6


def _scrubbed(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _CREDENTIAL.sub(REDACTED, value)
    if depth >= _DETAILS_DEPTH:
        return value if isinstance(value, (int, float, bool)) or value is None else REDACTED
    if isinstance(value, dict):
        return {str(k): REDACTED if SECRET_KEY_PATTERN.search(str(k)) else _scrubbed(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v, depth + 1) for v in value]
    return value


def check_source(source: str | None) -> str | None:
    """A source address as the log stores it (inet), or None."""
    if source is None:
        return None
    try:
        return str(ipaddress.ip_address(source))
    except ValueError:
        raise InvalidInput(f"source address {source!r} is not an IP address") from None


def record(actor: str, action: str, *, target_type: str | None = None, target_id: str | int | None = None,
           tenant_id: str | None = None, source: str | None = None, details: dict[str, Any] | None = None) -> int:
    """Append one row; its id. Joins the caller's transaction, so the row exists only if what
    it records does."""
    if not isinstance(actor, str) or not actor:
        raise ValueError("an audit row needs an actor")
    if not _ACTION.match(action):
        raise ValueError(f"audit action {action!r}: noun first, dotted, lowercase (e.g. 'user.created')")
    entry_id = audit_rows.insert(
        actor=actor, action=action, target_type=target_type,
        target_id=None if target_id is None else str(target_id), tenant_id=tenant_id, source_address=check_source(source),
        details=_scrubbed(dict(details or {})))
    return entry_id


def entries(*, scope: TenantScope, actor: str | None = None, action: str | None = None,
            since: datetime | None = None, limit: int = 100) -> list[AuditEntry]:
    """Newest first. ``action`` is exact, or a prefix ending in ``*`` (``user.*``)."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    return audit_rows.entries(scope=scope, actor=actor, action=action, since=since, limit=limit)


def ensure_partitions(months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """This month's partition and the next ``months_ahead``; the names of those created."""
    created = audit_rows.ensure_partitions(months_ahead)
    for name, moved in created:
        log.info("audit_partition_created", partition=name, moved_rows=moved)
    return [name for name, _ in created]


def create_partition(month: date) -> str:
    """The partition of ``month``'s month, created if missing (rows of that month waiting in the
    default partition move into it); its name."""
    name, created, moved = audit_rows.create_partition(month)
    if created:
        log.info("audit_partition_created", partition=name, moved_rows=moved)
    return name


def archive_month(month: date, *, by: str) -> str | None:
    """Detach a past month from the log; the name of the table it is now, None when that month
    had no partition. The current and later months are refused (they are still written)."""
    if month.replace(day=1) >= audit_rows.current_month():
        raise InvalidInput(f"audit month {month:%Y-%m} is not over yet; only past months are archived")
    detached = audit_rows.detach_partition(month)
    if detached is not None:
        log.info("audit_month_archived", month=f"{month:%Y-%m}", table=detached, by=by)
        record(by, "audit.month_archived", target_type="audit_partition", target_id=detached,
               details={"month": f"{month:%Y-%m}"})
    return detached


def drop_archived_month(month: date, *, by: str) -> str | None:
    """Drop the table of a month already archived; its name, or None when there is none. A month
    still in the log is refused: archive it first."""
    name = f"audit_log_y{month:%Y}m{month:%m}"
    if any(p.name == name and p.attached for p in audit_rows.partitions()):
        raise InvalidInput(f"audit month {month:%Y-%m} is still in the log; archive it first")
    dropped = audit_rows.drop_archived(month)
    if dropped is not None:
        log.info("audit_month_dropped", month=f"{month:%Y-%m}", table=dropped, by=by)
        record(by, "audit.month_dropped", target_type="audit_partition", target_id=dropped,
               details={"month": f"{month:%Y-%m}"})
    return dropped


def partitions() -> list[Partition]:
    return audit_rows.partitions()
