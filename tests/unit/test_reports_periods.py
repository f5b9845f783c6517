"""Report periods on plain dates: yesterday, the last full Sunday-to-Saturday week and the last
month, in the report's zone; and the CSV and HTML a report's figures render to."""
from datetime import date, datetime, timezone

import pytest

from domain import report_documents, reports
from domain.errors import InvalidInput


@pytest.mark.parametrize("kind, today, start, end", [
    ("daily", date(2027, 3, 1), date(2027, 2, 28), date(2027, 3, 1)),
    ("weekly", date(2027, 3, 28), date(2027, 3, 21), date(2027, 3, 28)),  # run on a Sunday: the week just ended
    ("weekly", date(2027, 3, 31), date(2027, 3, 21), date(2027, 3, 28)),  # on a Wednesday: the last full week
    ("monthly_compliance", date(2027, 1, 1), date(2026, 12, 1), date(2027, 1, 1)),
])
def test_the_last_full_period(kind, today, start, end):
    period = reports.period_of(kind, today, "Europe/Berlin")
    assert (period.start, period.end) == (start, end)


def test_a_period_is_bounded_by_local_midnights_across_a_dst_change():
    week = reports.period_of("weekly", date(2027, 4, 4), "Europe/Berlin")  # 28 March: summer time starts
    since, until = week.bounds()
    assert since == datetime(2027, 3, 27, 23, 0, tzinfo=timezone.utc)  # Sunday 28 March, 00:00 CET
    assert until == datetime(2027, 4, 3, 22, 0, tzinfo=timezone.utc)  # Sunday 4 April, 00:00 CEST
    assert (until - since).total_seconds() == 7 * 86400 - 3600


def test_a_past_period_is_named_by_its_start():
    assert reports.period_starting("monthly_compliance", date(2026, 12, 1), "UTC").end == date(2027, 1, 1)
    with pytest.raises(InvalidInput, match="starts on a Sunday"):
        reports.period_starting("weekly", date(2026, 12, 1), "UTC")
    with pytest.raises(InvalidInput):
        reports.period_of("hourly", date(2026, 12, 1), "UTC")


def test_csv_and_html_render_the_same_figures_and_escape_them():
    data = {"title": "T <1>", "period": {"start": "2026-11-30", "end": "2026-12-01", "zone": "UTC"},
            "summary": [{"item": "logins", "detail": "", "value": 3, "previous": None, "change_pct": None}],
            "sections": [{"title": "per tenant", "rows": [{"item": "<acme>", "detail": "logins", "value": 3}]}],
            "chart": {"title": "Jobs", "labels": ["00", "01"], "values": [0, 5]}}
    assert report_documents.to_csv(data).splitlines() == [
        "section,item,detail,value,previous,change_pct", "summary,logins,,3,,", "per tenant,<acme>,logins,3,,"]
    page = report_documents.to_html(data)
    assert "&lt;acme&gt;" in page and "<acme>" not in page and "T &lt;1&gt;" in page
    assert page.count("<rect") == 2 and "<script" not in page
