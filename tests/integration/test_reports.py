"""analytics.rollup and the three reports on the real PostgreSQL, built in Europe/Berlin: seeded
events, the rollups and reports they give (stored, CSV and HTML in the file store), and re-runs
that replace instead of adding."""
import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from domain import analytics, reports
from storage import files
from storage import settings as settings_module
from tests.cli_runs import run_cli
from tests.conftest import use_database

BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def event(sql, at: str, action: str, actor: str = "cli:ops@host", tenant=None, details=None):
    sql("INSERT INTO lamplighter.audit_log (at, actor, action, tenant_id, details) VALUES (%s, %s, %s, %s, %s)",
        (utc(at), actor, action, tenant, json.dumps(details or {})))


def attempt(sql, at: str, actor: str, outcome: str, tenant=None):
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, outcome, tenant_id)"
        " VALUES (gen_random_uuid(), 1, %s, 'maintenance', %s, %s, %s)", (actor, utc(at), outcome, tenant))


SEEDED_HOURS = ["2026-11-25 12:00", "2026-11-29 22:00", "2026-11-29 23:00", "2026-11-30 05:00", "2026-11-30 10:00",
                "2026-11-30 12:00", "2026-11-30 22:00"]


def roll_up_seeded_hours():
    for hour in SEEDED_HOURS:
        analytics.rollup(now=utc(hour), hour=utc(hour))


def seed(sql):
    event(sql, "2026-11-29 23:30", "user.signed_in", "user:1", "acme")  # Berlin: Nov 30, 00:30
    event(sql, "2026-11-29 22:30", "user.signed_in", "user:1", "acme")  # Berlin: Nov 29, 23:30
    event(sql, "2026-11-30 10:00", "user.sign_in_failed", "user:2")
    event(sql, "2026-11-30 10:01", "user.sign_in_failed", "user:2")
    event(sql, "2026-11-30 12:00", "job.redriven", "token:7", "acme")
    event(sql, "2026-11-25 12:00", "user.signed_in", "user:1", "acme")  # the week before
    event(sql, "2026-11-03 09:00", "user.created", details={"role": "superadmin"})
    event(sql, "2026-11-04 09:00", "token.revoked", "user:1")
    event(sql, "2026-11-05 09:00", "audit.month_dropped", "system:audit.archive")
    event(sql, "2026-10-31 22:30", "token.created", "user:1")  # Berlin: October 31, 23:30 (outside November)
    attempt(sql, "2026-11-30 05:00", "reports.daily", "completed")
    attempt(sql, "2026-11-30 22:59", "accounts.sync", "dead", "acme")


def test_rollup_counts_an_hour_per_tenant_and_a_rerun_replaces_it(database_url, sql):
    seed(sql)
    assert analytics.rollup(now=utc("2026-11-30 11:10"), hours=2) == {
        "hours": ["2026-11-30T09:00:00+00:00", "2026-11-30T10:00:00+00:00"], "rows": 1}
    rows = sql("SELECT hour, tenant, metric, subject, value FROM lamplighter.analytics_hourly ORDER BY 1, 2, 3, 4")
    assert rows == [(utc("2026-11-30 10:00"), "", "failed_logins", "", 2)]
    import actors

    result = actors.analytics.rollup.fn(hour="2026-11-30T22:15:00+00:00")
    assert result == {"hours": ["2026-11-30T22:00:00+00:00"], "rows": 2}
    assert sql("SELECT metric, subject, tenant, value FROM lamplighter.analytics_hourly WHERE hour = %s ORDER BY 1",
               (utc("2026-11-30 22:00"),)) == [("jobs_failed", "accounts.sync", "acme", 1),
                                               ("jobs_run", "accounts.sync", "acme", 1)]
    before = sql("SELECT * FROM lamplighter.analytics_hourly ORDER BY 1, 2, 3, 4")
    analytics.rollup(now=utc("2026-11-30 11:10"), hours=2)
    actors.analytics.rollup.fn(hour="2026-11-30T22:15:00+00:00")
    assert sql("SELECT * FROM lamplighter.analytics_hourly ORDER BY 1, 2, 3, 4") == before  # nothing changed
    event(sql, "2026-11-30 10:30", "user.sign_in_failed", "user:3")  # late: a re-run of its hour counts it
    analytics.rollup(now=utc("2026-11-30 11:10"))
    assert sql("SELECT value FROM lamplighter.analytics_hourly WHERE metric = 'failed_logins'") == [(3,)]


def _store(database_url, tmp_path):
    use_database(database_url, LAMPLIGHTER_FILES_URL=f"file://{tmp_path}", LAMPLIGHTER_REPORTS_ZONE="Europe/Berlin")
    return files.open_store(settings_module.get())


def test_daily_report_is_yesterday_in_the_zone_stored_rendered_and_replaced_on_rerun(database_url, sql, tmp_path):
    store = _store(database_url, tmp_path)
    seed(sql)
    roll_up_seeded_hours()
    now = datetime(2026, 12, 1, 0, 30, tzinfo=BERLIN)
    made = reports.generate("daily", store, now=now, zone="Europe/Berlin")
    assert {k: made[k] for k in ("kind", "period_start", "period_end", "zone")} == {
        "kind": "daily", "period_start": "2026-11-30", "period_end": "2026-12-01", "zone": "Europe/Berlin"}
    report = reports.get(made["report_id"])
    summary = {row["item"]: row["value"] for row in report.data["summary"]}
    assert summary == {"logins": 1, "failed_logins": 2, "api_calls": 1, "jobs_run": 2, "jobs_failed": 1,
                       "documents_uploaded": 0}
    assert sum(report.data["chart"]["values"]) == 2 and report.data["chart"]["values"][6] == 1  # 05:00Z = 06 CET
    csv_text = store.get(report.csv_key).decode()
    assert csv_text.splitlines()[0] == "section,item,detail,value,previous,change_pct"
    assert "summary,logins,,1,," in csv_text and "jobs per actor,accounts.sync,jobs_failed,1,," in csv_text
    page = store.get(report.html_key).decode()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained: nothing fetched
    assert report.csv_key == "reports/daily/Europe~Berlin/2026-11-30.csv"

    again = reports.generate("daily", store, now=now, zone="Europe/Berlin")
    assert again["report_id"] == made["report_id"]
    assert sql("SELECT count(*), max(runs) FROM lamplighter.reports") == [(1, 2)]
    assert reports.get(made["report_id"]).data == report.data
    assert store.get(report.csv_key).decode() == csv_text


def test_weekly_report_compares_with_the_week_before(database_url, sql, tmp_path):
    store = _store(database_url, tmp_path)
    seed(sql)
    roll_up_seeded_hours()
    import actors

    made = reports.generate("weekly", store, now=datetime(2026, 12, 6, 2, 0, tzinfo=BERLIN), zone="Europe/Berlin")
    assert (made["period_start"], made["period_end"]) == ("2026-11-29", "2026-12-06")  # Sunday to Saturday
    data = reports.get(made["report_id"]).data
    logins = next(row for row in data["summary"] if row["item"] == "logins")
    assert (logins["value"], logins["previous"], logins["change_pct"]) == (2, 1, 100.0)
    assert data["chart"]["labels"][0] == "Sun 29" and len(data["chart"]["values"]) == 7
    rerun = actors.reports.weekly.fn(period_start="2026-11-29")  # the actor, its zone from the settings
    assert rerun["report_id"] == made["report_id"]
    assert sql("SELECT kind, runs FROM lamplighter.reports") == [("weekly", 2)]


def test_monthly_compliance_report_counts_the_audit_log_and_the_cli_shows_and_exports_it(
        database_url, sql, tmp_path, monkeypatch, capsys):
    store = _store(database_url, tmp_path)
    seed(sql)
    made = reports.generate("monthly_compliance", store, now=datetime(2026, 12, 1, 2, 30, tzinfo=BERLIN),
                            zone="Europe/Berlin")
    assert (made["period_start"], made["period_end"]) == ("2026-11-01", "2026-12-01")
    data = reports.get(made["report_id"]).data
    summary = {row["item"]: row["value"] for row in data["summary"]}
    assert summary == {"admin actions": 3, "privilege changes": 1, "credential rotations": 1,
                       "failed logins": 2, "data deletions": 1}
    sections = {s["title"]: {r["item"]: r["value"] for r in s["rows"]} for s in data["sections"]}
    assert sections["admin actions"] == {"job.redriven": 1, "token.revoked": 1, "user.created": 1}
    before = sql("SELECT id, data FROM lamplighter.reports")
    reports.generate("monthly_compliance", store, now=datetime(2026, 12, 1, 2, 30, tzinfo=BERLIN),
                     zone="Europe/Berlin")
    assert sql("SELECT id, data FROM lamplighter.reports") == before

    monkeypatch.setenv("DATABASE_URL", database_url)
    code, out, _ = run_cli(monkeypatch, capsys, "reports", "list", "--json")
    assert code == 0 and [r["kind"] for r in json.loads(out)] == ["monthly_compliance"]
    code, out, _ = run_cli(monkeypatch, capsys, "reports", "show", str(made["report_id"]))
    assert code == 0 and "Compliance November 2026" in out and "failed logins" in out
    code, out, _ = run_cli(monkeypatch, capsys, "reports", "export", str(made["report_id"]), "--format", "csv")
    assert code == 0 and out == store.get(reports.get(made["report_id"]).csv_key).decode()
    page = tmp_path / "report.html"
    code, _, _ = run_cli(monkeypatch, capsys, "reports", "export", str(made["report_id"]), "--format", "html",
                         "--output", str(page))
    assert code == 0 and "<svg" in page.read_text()
    code, _, err = run_cli(monkeypatch, capsys, "reports", "show", "999")
    assert code == 1 and err.count("\n") == 1 and "no report 999" in err
    with pytest.raises(SystemExit) as refused:
        run_cli(monkeypatch, capsys, "reports", "export", "1", "--format", "pdf")
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'pdf'" in err
