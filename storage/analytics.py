"""Hourly analytics rollups (lamplighter.analytics_hourly; queries in sql/analytics.sql)."""
from __future__ import annotations

from datetime import datetime

from storage.queries import rows, runner, transaction

execute = runner("analytics")


def replace_hour(hour: datetime) -> int:
    """Roll up one UTC hour again, in one transaction: its old rows go, the new ones come; the
    number of rows written."""
    with transaction():
        execute("analytics_delete_hour", {"hour": hour})
        return execute("analytics_rollup_hour", {"hour": hour}).rowcount


def totals(since: datetime, until: datetime) -> list[dict]:
    return rows(execute("analytics_totals", {"since": since, "until": until}))


def series(metric: str, since: datetime, until: datetime, *, bucket: str, zone: str) -> list[tuple[datetime, int]]:
    return [tuple(r) for r in execute("analytics_series", {"metric": metric, "since": since, "until": until,
                                                           "bucket": bucket, "zone": zone}).fetchall()]
