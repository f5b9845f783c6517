"""Alerts as incidents (queries in sql/alerts.sql; rules in domain/alerts.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner

execute = runner("alerts")


@dataclass(frozen=True)
class Alert:
    id: int
    rule: str
    subject_kind: str
    subject: str
    details: dict
    count: int
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


def _alert(row: dict) -> Alert:
    return Alert(**{k: v for k, v in row.items() if k != "opened"})


def open_or_touch(rule: str, subject_kind: str, subject: str, details: dict) -> tuple[Alert, bool]:
    """The open incident (opened now, or counted once more) and whether this call opened it."""
    [row] = rows(execute("alert_open_or_touch", {"rule": rule, "subject_kind": subject_kind, "subject": subject,
                                                 "details": json.dumps(details, default=str)}))
    return _alert(row), row["opened"]


def resolve(rule: str, subject_kind: str, subject: str, *, by: str) -> Alert | None:
    found = rows(execute("alert_resolve", {"rule": rule, "subject_kind": subject_kind, "subject": subject, "by": by}))
    return _alert(found[0]) if found else None


def resolve_by_id(alert_id: int, *, by: str) -> Alert | None:
    found = rows(execute("alert_resolve_by_id", {"id": alert_id, "by": by}))
    return _alert(found[0]) if found else None


def get(alert_id: int) -> Alert | None:
    found = rows(execute("alert_get", {"id": alert_id}))
    return _alert(found[0]) if found else None


def list_alerts(*, open_only: bool = False, limit: int = 50) -> list[Alert]:
    return [_alert(r) for r in rows(execute("alert_list", {"open_only": open_only, "limit": limit}))]
