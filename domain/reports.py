"""Admin reports: daily activity, weekly analytics with week-over-week change, and the monthly
compliance report (README "Admin jobs").

A report covers a period of local dates in the reports' zone (``settings.reports.zone``, default
UTC): "yesterday" is yesterday there, a week runs Sunday to Saturday, a month is a calendar
month. The kind, period and zone are its identity (a re-run replaces it). Its figures are
stored in lamplighter.reports and rendered to CSV and HTML (domain/report_documents.py), both
written to the file store under ``reports/<kind>/<zone>/<period start>.{csv,html}``.

Daily and weekly figures come from the hourly rollups (domain/analytics.py), which count UTC
hours: in a zone whose offset is not whole hours, a day's edges are the UTC hours they fall in.
The compliance report reads the audit log itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import BinaryIO, Protocol
from zoneinfo import ZoneInfo

from domain import report_documents
from domain.errors import InvalidInput, NotFound
from storage import analytics as rollup_rows
from storage import reports as report_rows
from storage.reports import Report

KINDS = ("daily", "weekly", "monthly_compliance")
# Compliance categories: audit actions, exact or by a prefix/suffix pattern.
COMPLIANCE = {
    "privilege changes": ("user.created", "user.role_changed", "user.disabled", "tenant.status_changed"),
    "credential rotations": ("token.created", "token.revoked", "user.password_reset", "maintenance.keys_rotated"),
    "failed logins": ("user.sign_in_failed",),
    "data deletions": ("*.deleted", "*.dropped", "*.purged", "audit.month_archived", "audit.month_dropped"),
}
ADMIN_ACTOR_KINDS = ("user", "cli", "token")
NOT_ADMIN_ACTIONS = ("user.signed_in", "user.sign_in_failed")  # a person signing in is no admin action


class Files(Protocol):
    def put(self, key: str, data: bytes | BinaryIO): ...


@dataclass(frozen=True)
class Period:
    kind: str
    start: date
    end: date  # exclusive
    zone: str

    def bounds(self) -> tuple[datetime, datetime]:
        """The period's start and end as UTC instants (local midnights in the zone)."""
        tz = ZoneInfo(self.zone)
        return tuple(datetime.combine(d, time(0), tzinfo=tz).astimezone(timezone.utc) for d in (self.start, self.end))

    def previous(self) -> "Period":
        length = self.end - self.start
        return Period(self.kind, self.start - length, self.start, self.zone)


def period_of(kind: str, today: date, zone: str) -> Period:
    """The last full period before ``today`` (a local date)."""
    if kind == "daily":
        return Period(kind, today - timedelta(days=1), today, zone)
    if kind == "weekly":
        start = today - timedelta(days=(today.weekday() + 1) % 7 + 7)  # the Sunday a full week before
        return Period(kind, start, start + timedelta(days=7), zone)
    if kind == "monthly_compliance":
        first = today.replace(day=1)
        return Period(kind, (first - timedelta(days=1)).replace(day=1), first, zone)
    raise InvalidInput(f"report kind must be one of {', '.join(KINDS)}, not {kind!r}")


def period_starting(kind: str, start: date, zone: str) -> Period:
    """The period of ``kind`` that starts on ``start`` (to build a past report again)."""
    if kind == "weekly" and start.weekday() != 6:
        raise InvalidInput(f"a weekly report starts on a Sunday; {start} is a {start:%A}")
    if kind == "monthly_compliance" and start.day != 1:
        raise InvalidInput("a monthly report starts on the 1st")
    if kind not in KINDS:
        raise InvalidInput(f"report kind must be one of {', '.join(KINDS)}, not {kind!r}")
    following = {"daily": start + timedelta(days=1), "weekly": start + timedelta(days=7),
                 "monthly_compliance": (start + timedelta(days=32)).replace(day=1)}[kind]
    return Period(kind, start, following, zone)


def _row(item: str, value, *, detail: str = "", previous=None) -> dict:
    change = None
    if previous is not None:
        change = None if not previous else round((value - previous) * 100.0 / previous, 1)
    return {"item": item, "detail": detail, "value": value, "previous": previous, "change_pct": change}


def _totals(period: Period) -> dict[tuple[str, str, str], int]:
    return {(r["metric"], r["tenant"], r["subject"]): r["value"] for r in rollup_rows.totals(*period.bounds())}


def _by_metric(totals: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for (metric, _, _), value in totals.items():
        out[metric] = out.get(metric, 0) + value
    return out


def _activity_sections(totals: dict) -> list[dict]:
    tenants, actors = {}, {}
    for (metric, tenant, subject), value in totals.items():
        tenants.setdefault(tenant or "(platform)", {}).setdefault(metric, 0)
        tenants[tenant or "(platform)"][metric] += value
        if subject:
            actors.setdefault(subject, {"jobs_run": 0, "jobs_failed": 0})[metric] += value
    return [
        {"title": "per tenant", "rows": [_row(t, v, detail=m) for t in sorted(tenants)
                                         for m, v in sorted(tenants[t].items())]},
        {"title": "jobs per actor", "rows": [_row(a, v, detail=m) for a in sorted(actors)
                                             for m, v in sorted(actors[a].items())]},
    ]


def build_daily(period: Period) -> dict:
    totals = _totals(period)
    metrics = _by_metric(totals)
    since, until = period.bounds()
    series = dict(rollup_rows.series("jobs_run", since, until, bucket="hour", zone=period.zone))
    labels = [f"{h:02d}" for h in range(24)]
    values = [sum(v for k, v in series.items() if k.hour == h) for h in range(24)]
    return {"title": f"Daily activity {period.start}", "summary": [_row(m, metrics.get(m, 0)) for m in METRICS],
            "sections": _activity_sections(totals), "chart": {"title": "Jobs run per hour", "labels": labels,
                                                               "values": values}}


def build_weekly(period: Period) -> dict:
    totals, before = _totals(period), _by_metric(_totals(period.previous()))
    metrics = _by_metric(totals)
    since, until = period.bounds()
    series = dict((k.date(), v) for k, v in rollup_rows.series("jobs_run", since, until, bucket="day",
                                                                 zone=period.zone))
    days = [period.start + timedelta(days=n) for n in range(7)]
    return {"title": f"Weekly analytics {period.start} to {period.end - timedelta(days=1)}",
            "summary": [_row(m, metrics.get(m, 0), previous=before.get(m, 0)) for m in METRICS],
            "sections": _activity_sections(totals),
            "chart": {"title": "Jobs run per day", "labels": [f"{d:%a %d}" for d in days],
                      "values": [series.get(d, 0) for d in days]}}


def _category(action: str) -> str | None:
    for name, patterns in COMPLIANCE.items():
        if any(action == p or (p.startswith("*") and action.endswith(p[1:])) for p in patterns):
            return name
    return None


def build_compliance(period: Period) -> dict:
    since, until = period.bounds()
    categories = {name: {} for name in ["admin actions", *COMPLIANCE]}
    for row in report_rows.compliance_events(since, until):
        if row["actor_kind"] in ADMIN_ACTOR_KINDS and row["action"] not in NOT_ADMIN_ACTIONS:
            categories["admin actions"][row["action"]] = categories["admin actions"].get(row["action"], 0) + row["events"]
        category = _category(row["action"])
        if category:
            categories[category][row["action"]] = categories[category].get(row["action"], 0) + row["events"]
    days = dict(report_rows.compliance_days(since, until, period.zone))
    span = [period.start + timedelta(days=n) for n in range((period.end - period.start).days)]
    return {"title": f"Compliance {period.start:%B %Y}",
            "summary": [_row(name, sum(actions.values())) for name, actions in categories.items()],
            "sections": [{"title": name, "rows": [_row(a, n) for a, n in sorted(actions.items())]}
                         for name, actions in categories.items()],
            "chart": {"title": "Admin actions per day", "labels": [f"{d.day}" for d in span],
                      "values": [days.get(d, 0) for d in span]}}


METRICS = ("logins", "failed_logins", "api_calls", "jobs_run", "jobs_failed", "documents_uploaded")
BUILDERS = {"daily": build_daily, "weekly": build_weekly, "monthly_compliance": build_compliance}


def keys(period: Period) -> tuple[str, str]:
    base = f"reports/{period.kind}/{period.zone.replace('/', '~')}/{period.start.isoformat()}"
    return f"{base}.csv", f"{base}.html"


def generate(kind: str, files: Files, *, now: datetime, zone: str, period_start: date | None = None) -> dict:
    """Build, store and write the report of the last full period before ``now`` in ``zone`` (or
    of the period starting on ``period_start``); what it did, for the job's history row."""
    if kind not in KINDS:
        raise InvalidInput(f"report kind must be one of {', '.join(KINDS)}, not {kind!r}")
    period = (period_starting(kind, period_start, zone) if period_start is not None
              else period_of(kind, now.astimezone(ZoneInfo(zone)).date(), zone))
    data = BUILDERS[kind](period)
    data["period"] = {"start": period.start.isoformat(), "end": period.end.isoformat(), "zone": zone}
    csv_key, html_key = keys(period)
    files.put(csv_key, report_documents.to_csv(data).encode())
    files.put(html_key, report_documents.to_html(data).encode())
    report_id = report_rows.save(kind=kind, period_start=period.start, period_end=period.end, zone=zone, data=data,
                                 csv_key=csv_key, html_key=html_key)
    return {"report_id": report_id, "kind": kind, "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(), "zone": zone}


def list_reports(*, kind: str | None = None, limit: int = 50) -> list[Report]:
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"report kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    return report_rows.list_reports(kind=kind, limit=limit)


def get(report_id: int) -> Report:
    report = report_rows.get(report_id)
    if report is None:
        raise NotFound(f"no report {report_id}")
    return report


def render(report: Report, fmt: str) -> str:
    if fmt == "csv":
        return report_documents.to_csv(report.data)
    if fmt == "html":
        return report_documents.to_html(report.data)
    raise InvalidInput(f"format must be csv or html, not {fmt!r}")
