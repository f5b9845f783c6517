"""Hourly analytics rollups (analytics.rollup, hourly at :05): the previous hour's events per
tenant, counted into lamplighter.analytics_hourly, which the reports and charts read.

Metrics: ``logins`` and ``failed_logins`` (audit log), ``api_calls`` (audit rows whose actor is
a token), ``documents_uploaded`` (``document.uploaded`` audit rows, once that domain writes
them), ``jobs_run`` and ``jobs_failed`` per actor (job history: attempts, and those that failed,
went dead or were lost). Hours are UTC hours. A re-run replaces its hour whole, in one
transaction, so a late event is counted by running the hour again (``hour=``).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from storage import analytics as rollup_rows

METRICS = ("logins", "failed_logins", "api_calls", "documents_uploaded", "jobs_run", "jobs_failed")


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def rollup(*, now: datetime, hours: int = 1, hour: datetime | None = None) -> dict:
    """Roll up the ``hours`` full hours before ``now`` (oldest first), or the one ``hour`` given.
    Each hour is one batch (one transaction). Counts for the job's history row."""
    if hour is not None:
        todo = [hour_of(hour)]
    else:
        if not 1 <= hours <= 24 * 31:
            raise ValueError("hours must be between 1 and 744")
        current = hour_of(now)
        todo = [current - timedelta(hours=n) for n in range(hours, 0, -1)]
    written = 0
    for each in todo:
        written += rollup_rows.replace_hour(each)
    return {"hours": [h.isoformat() for h in todo], "rows": written}
