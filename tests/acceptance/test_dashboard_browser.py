"""The dashboard in a real browser: Playwright driving Debian's Chromium against the web app on
uvicorn, with a real worker. An operator signs in, finds a dead job from the overview, redrives
it with edited arguments (checked as typed, confirmed), sees it complete; pauses a schedule and
sees its next tick skipped while another one's fires; signs out. Screenshots of the overview and
the job page go to the test's tmp dir (docs/dashboard-overview.png is one of them)."""
from __future__ import annotations

import pytest

from scheduler import sync, ticks
from storage import jobs, schedules
from tests import system_packages
from tests.conftest import wait_for
from tests.dashboard_users import PASSWORD, create_user
from tests.integration.test_api_jobs import _fail_attempt
from tests.integration.test_scheduler import definition

pytestmark = pytest.mark.acceptance
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    system_packages.ensure("chromium", CHROMIUM)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        context = launched.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        launched.close()


def _performance_samples(sql) -> None:
    """An hour of monitoring.performance samples for two actors, as the charts read them."""
    sql("INSERT INTO lamplighter.perf_samples (taken_at, period_start, actor_name, queue_name, completed, failed, "
        "failure_rate, per_minute, run_p50_ms, run_p95_ms) "
        "SELECT lamplighter.now() - make_interval(mins => 60 - 5 * i), "
        "       lamplighter.now() - make_interval(mins => 65 - 5 * i), actor, 'maintenance', "
        "       40 + (i * 7) % 23, (i * 3) % 5, 0.05, 8 + i % 4, 20 + (i * 11) % 17, 60 + (i * 13) % 41 "
        "FROM generate_series(0, 11) AS i, (VALUES ('maintenance.ping'), ('reports.daily')) AS a(actor)")


def test_operator_redrives_a_dead_job_and_pauses_a_schedule_in_chromium(api, sql, run_worker, db_clock, browser,
                                                                       tmp_path):
    page = browser
    email = create_user("operator")
    sync.sync([definition("browser.paused"), definition("browser.control")])
    token = api.token("enqueue")
    job_id = api.call("POST", "/api/jobs", token, json={"actor": "maintenance.ping",
                                                          "kwargs": {"note": "original"}}).json()["id"]
    _fail_attempt(sql, job_id, "upstream said no")
    _performance_samples(sql)
    run_worker(threads=2, queues=["maintenance"])

    # Sign in: any page sends an anonymous visitor to the form, and back after it.
    page.goto(api.url + "/dashboard/")
    assert "/dashboard/login" in page.url
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(api.url + "/dashboard/")
    dead = page.locator("#queues a.bad")
    assert dead.inner_text() == "1"
    assert page.locator("svg.chart polyline").count() == 4  # throughput, failures, run time p50 and p95
    page.locator("details.values summary").first.click()  # each chart's values, as a table
    # a header and the 11 samples of the last hour (the twelfth is an hour old, outside the range)
    assert page.locator("details.values").first.locator("tr").count() == 12
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    # The dead job, from the overview's link.
    dead.click()
    page.click(f"a[href='/dashboard/jobs/{job_id}']")
    assert page.inner_text("#job-state") == "dead"
    assert "upstream said no" in page.inner_text("#attempts")
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

    # Redrive with edited arguments: the page refuses broken JSON as it is typed.
    page.fill("#redrive-arguments", '{"kwargs": {"note": ')
    assert page.is_disabled("#redrive") and "not valid JSON" in page.inner_text(".json-status")
    page.fill("#redrive-arguments", '{"kwargs": {"note": "edited in the browser"}}')
    assert page.is_enabled("#redrive")
    page.click("#redrive")
    assert "edited arguments" in page.inner_text(".confirm-what")
    page.click("#confirm")
    assert "queued with edited arguments" in page.inner_text(".notice")

    def completed():
        page.reload()
        return page.inner_text("#job-state") == "completed"

    wait_for(completed, timeout=20, interval=0.2, message="the redriven job completed")
    assert jobs.get(job_id).kwargs == {"note": "edited in the browser"}
    assert "redriven" in page.inner_text("#events") and "edited_args" in page.inner_text("#events")

    # Pause one schedule; when both are due, only the other one fires.
    page.click("a[href='/dashboard/schedules']")
    page.click("tr[data-key='browser.paused'] button:has-text('Pause')")
    page.click("#confirm")
    assert page.inner_text("tr[data-key='browser.paused'] .schedule-state").startswith("paused by user:")
    db_clock.advance(120)
    holder = "browser-test"
    assert schedules.acquire_lease(holder, ttl_seconds=3600) is not None
    fired = {r.key: r.outcome for r in ticks.fire_due(holder)}
    assert fired.get("browser.control") == "enqueued" and "browser.paused" not in fired
    page.reload()
    assert page.inner_text("tr[data-key='browser.paused'] td:nth-child(7)") == "-"
    assert "job" in page.inner_text("tr[data-key='browser.control'] td:nth-child(7)")

    # Sign out: the session ends, and pages send the visitor to the form again.
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/dashboard/login")
    page.goto(api.url + "/dashboard/jobs")
    assert "/dashboard/login" in page.url
    assert sql("SELECT count(*) FROM lamplighter.sessions")[0][0] == 0
