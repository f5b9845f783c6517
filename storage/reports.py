"""Stored reports (lamplighter.reports; queries in sql/reports.sql)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

from storage.queries import rows, runner

execute = runner("reports")


@dataclass(frozen=True)
class Report:
    id: int
    kind: str
    period_start: date
    period_end: date
    zone: str
    data: dict
    csv_key: str
    html_key: str
    generated_at: datetime
    runs: int


def save(*, kind: str, period_start: date, period_end: date, zone: str, data: dict, csv_key: str,
         html_key: str) -> int:
    return execute("report_save", {"kind": kind, "period_start": period_start, "period_end": period_end,
                                   "zone": zone, "data": json.dumps(data, default=str), "csv_key": csv_key,
                                   "html_key": html_key}).fetchone()[0]


def list_reports(*, kind: str | None = None, limit: int = 50) -> list[Report]:
    return [Report(**row) for row in rows(execute("report_list", {"kind": kind, "limit": limit}))]


def get(report_id: int) -> Report | None:
    found = rows(execute("report_get", {"id": report_id}))
    return Report(**found[0]) if found else None


def find(kind: str, period_start: date, zone: str) -> Report | None:
    found = rows(execute("report_find", {"kind": kind, "period_start": period_start, "zone": zone}))
    return Report(**found[0]) if found else None


def compliance_events(since: datetime, until: datetime) -> list[dict]:
    return rows(execute("report_compliance_events", {"since": since, "until": until}))


def compliance_days(since: datetime, until: datetime, zone: str) -> list[tuple[date, int]]:
    return [tuple(r) for r in execute("report_compliance_days", {"since": since, "until": until,
                                                                 "zone": zone}).fetchall()]
