"""The dashboard over uvicorn on 127.0.0.1, without a browser: every page without a session and
with each role, the session cookie's flags, CSRF refusals, confirmation, the audit row of an
action with its address, and the sign-in rate limit."""
import re

import pytest

from domain import sign_in_limits, users
from storage import jobs
from tests.dashboard_users import PASSWORD, ROLES, create_user, csrf_of, signed_in
from tests.integration.test_api_jobs import _fail_attempt

PAGES = ["/dashboard/", "/dashboard/jobs", "/dashboard/schedules", "/dashboard/workers", "/dashboard/queues",
         "/dashboard/alerts", "/dashboard/reports", "/dashboard/audit"]
# What each role gets on each page: the audit log needs the audit scope (superadmin).
EXPECTED = {"viewer": 200, "operator": 200, "superadmin": 200}


def _dead_job(api, sql) -> str:
    token = api.token("enqueue")
    job_id = api.call("POST", "/api/jobs", token, json={"actor": "maintenance.ping", "kwargs": {"note": "x"}}).json()["id"]
    _fail_attempt(sql, job_id, "boom")
    return job_id


def test_every_page_redirects_to_sign_in_without_a_session(api):
    for path in PAGES:
        answer = api.session.get(api.url + path, allow_redirects=False, timeout=30)
        assert answer.status_code == 303, path
        assert answer.headers["Location"].startswith("/dashboard/login?next=%2Fdashboard%2F"), path
    answer = api.session.post(api.url + "/dashboard/queues/default/pause", data={"csrf": "x"}, allow_redirects=False)
    assert answer.status_code == 303


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_the_pages_its_scopes_allow(api, sql, role):
    job_id = _dead_job(api, sql)
    browser = signed_in(api.url, create_user(role))
    for path in PAGES + [f"/dashboard/jobs/{job_id}"]:
        answer = browser.get(api.url + path, timeout=30)
        expected = 403 if path == "/dashboard/audit" and role != "superadmin" else EXPECTED[role]
        assert answer.status_code == expected, (role, path, answer.text[:300])
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    page = browser.get(f"{api.url}/dashboard/jobs/{job_id}", timeout=30).text
    assert ('id="redrive"' in page) == (role != "viewer")
    if role == "viewer":  # a viewer's action is refused even with its own CSRF token
        answer = browser.post(f"{api.url}/dashboard/jobs/{job_id}/retry",
                              data={"csrf": csrf_of(page), "confirmed": "yes"}, timeout=30)
        assert answer.status_code == 403 and jobs.get(job_id).state == "dead"


def test_a_tenant_user_sees_its_tenant_only(api, sql):
    from domain import tenants

    tenants.create_tenant("acme", name="Acme", by="tests")
    browser = signed_in(api.url, create_user("operator", tenant="acme"))
    assert browser.get(api.url + "/dashboard/", allow_redirects=False).headers["Location"] == "/dashboard/jobs"
    assert browser.get(api.url + "/dashboard/schedules").status_code == 404
    assert browser.get(api.url + "/dashboard/jobs").status_code == 200
    assert browser.get(api.url + f"/dashboard/jobs/{_dead_job(api, sql)}").status_code == 404  # a platform job


def test_cookie_flags_and_secure_behind_tls(api):
    email = create_user("viewer")
    answer = api.session.post(api.url + "/dashboard/login", data={"email": email, "password": PASSWORD},
                              allow_redirects=False, headers={"X-Forwarded-Proto": "https"})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie and "Secure" in cookie
    plain = signed_in(api.url, email)
    assert plain.cookies.get("lamplighter_session").startswith("lls_")
    answer = api.session.post(api.url + "/dashboard/login", data={"email": email, "password": PASSWORD},
                              allow_redirects=False)
    assert "Secure" not in answer.headers["Set-Cookie"]


def test_actions_need_the_sessions_csrf_token_then_confirmation_and_are_audited(api, sql):
    job_id = _dead_job(api, sql)
    browser = signed_in(api.url, create_user("operator"))
    other = signed_in(api.url, create_user("operator", email="second@example.com"))
    url = f"{api.url}/dashboard/jobs/{job_id}/retry"
    assert browser.post(url, data={"confirmed": "yes"}).status_code == 403
    foreign = csrf_of(other.get(api.url + "/dashboard/jobs").text)
    assert browser.post(url, data={"csrf": foreign, "confirmed": "yes"}).status_code == 403
    assert jobs.get(job_id).state == "dead"
    token = csrf_of(browser.get(api.url + "/dashboard/jobs").text)
    asked = browser.post(url, data={"csrf": token})
    assert asked.status_code == 200 and 'name="confirmed" value="yes"' in asked.text
    assert jobs.get(job_id).state == "dead"  # nothing yet: the confirmation page only
    done = browser.post(url, data={"csrf": token, "confirmed": "yes"}, allow_redirects=False)
    assert done.status_code == 303 and jobs.get(job_id).state == "queued"
    [(actor, source, detail)] = sql("SELECT actor, source_address, details FROM lamplighter.audit_log "
                                    "WHERE action = 'job.redriven' AND target_id = %s", (job_id,))
    [(user_id,)] = sql("SELECT id FROM lamplighter.users WHERE email = 'operator@example.com'")
    assert (actor, source, detail["source"]) == (f"user:{user_id}", "127.0.0.1", "127.0.0.1")


def test_redrive_arguments_are_checked_on_the_server(api, sql):
    job_id = _dead_job(api, sql)
    browser = signed_in(api.url, create_user("operator"))
    token = csrf_of(browser.get(api.url + "/dashboard/jobs").text)
    url = f"{api.url}/dashboard/jobs/{job_id}/redrive"
    for text, reason in (("{nope", "not valid JSON"), ('{"args": {}}', "must be a list"),
                         ('{"kwargs": {"unknown_arg": 1}}', "do not fit"),
                         ('{"kwargs": {"note": "[REDACTED]"}}', "REDACTED")):
        answer = browser.post(url, data={"csrf": token, "arguments": text, "confirmed": "yes"})
        assert answer.status_code == 422 and reason in answer.text, (text, answer.text[:400])
    assert jobs.get(job_id).state == "dead"


def test_sign_in_is_rate_limited_per_account_and_logout_ends_the_session(api, sql, db_clock):
    email = create_user("viewer")
    for _ in range(sign_in_limits.PER_ACCOUNT):
        assert api.session.post(api.url + "/dashboard/login", data={"email": email, "password": "wrong password!"},
                                allow_redirects=False).status_code == 401
    refused = api.session.post(api.url + "/dashboard/login", data={"email": email, "password": PASSWORD},
                               allow_redirects=False)
    assert refused.status_code == 429 and "too many" in refused.text
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'user.sign_in_throttled'")[0][0] == 1
    with pytest.raises(sign_in_limits.TooManyAttempts):
        sign_in_limits.check(email, source="10.0.0.9")  # the account's limit, from any address
    db_clock.advance(sign_in_limits.WINDOW_SECONDS + 1)  # this thread's clock: the failures age out
    sign_in_limits.check(email, source="127.0.0.1")
    browser = signed_in(api.url, create_user("operator"))
    page = browser.get(api.url + "/dashboard/jobs")
    out = browser.post(api.url + "/dashboard/logout", data={"csrf": csrf_of(page.text)}, allow_redirects=False)
    assert out.status_code == 303 and 'lamplighter_session=""' in out.headers["Set-Cookie"]
    assert sql("SELECT count(*) FROM lamplighter.sessions")[0][0] == 0


def test_an_address_without_an_account_is_limited_like_one_so_the_limit_tells_nothing(api, sql):
    """Without an account behind the address, the sixth try is refused as it is for a real one:
    otherwise a 429 after five tries would say which addresses have an account."""
    real, nobody = create_user("viewer"), "Nobody.Here@example.com"
    answers = {}
    for email in (real, nobody):
        codes = [api.session.post(api.url + "/dashboard/login", data={"email": email, "password": "hunter2-typed"},
                                  allow_redirects=False).status_code for _ in range(sign_in_limits.PER_ACCOUNT + 1)]
        answers[email] = codes
    assert answers[real] == answers[nobody] == [401] * sign_in_limits.PER_ACCOUNT + [429]
    with pytest.raises(sign_in_limits.TooManyAttempts):  # the same address however it is typed
        sign_in_limits.check("  nobody.here@EXAMPLE.com ", source="10.0.0.9")
    sign_in_limits.check("someone.else@example.com", source="10.0.0.9")
    rows = sql("SELECT target_type, target_id, details::text FROM lamplighter.audit_log "
               "WHERE action IN ('user.sign_in_failed', 'user.sign_in_throttled') AND target_type = 'login'")
    assert len(rows) == sign_in_limits.PER_ACCOUNT + 2  # five failures, two refusals (the web's and the check's)
    assert {target_id for _, target_id, _ in rows} == {users.login_key(nobody)}
    assert not [row for row in rows if "nobody" in str(row).lower()]  # the typed address is not kept


def test_sign_in_is_rate_limited_per_address(api, sql):
    sql("INSERT INTO lamplighter.audit_log (actor, action, source_address, details) "
        "SELECT 'anonymous', 'user.sign_in_failed', '127.0.0.1', '{}' FROM generate_series(1, %s)",
        (sign_in_limits.PER_ADDRESS,))
    answer = api.session.post(api.url + "/dashboard/login", data={"email": create_user("viewer"),
                                                                  "password": PASSWORD}, allow_redirects=False)
    assert answer.status_code == 429


def test_schedule_and_queue_controls_are_confirmed_and_audited_with_the_address(api, sql):
    from scheduler import sync
    from tests.integration.test_scheduler import definition

    sync.sync([definition("dash.ping")])
    browser = signed_in(api.url, create_user("operator"))
    token = csrf_of(browser.get(api.url + "/dashboard/schedules").text)
    for path in ("/dashboard/schedules/dash.ping/pause", "/dashboard/schedules/dash.ping/run",
                 "/dashboard/queues/maintenance/pause"):
        assert "Confirm" in browser.post(api.url + path, data={"csrf": token}).text
        done = browser.post(api.url + path, data={"csrf": token, "confirmed": "yes"}, allow_redirects=False)
        assert done.status_code == 303, done.text
    assert sql("SELECT paused FROM lamplighter.schedules WHERE key = 'dash.ping'") == [(True,)]
    assert sql("SELECT paused FROM lamplighter.queues WHERE name = 'maintenance'") == [(True,)]
    rows = sql("SELECT action, source_address FROM lamplighter.audit_log WHERE actor LIKE 'user:%%' "
               "AND action IN ('schedule.paused', 'schedule.run_now', 'queue.paused') ORDER BY id")
    assert [(a, str(s)) for a, s in rows] == [("schedule.paused", "127.0.0.1"), ("schedule.run_now", "127.0.0.1"),
                                              ("queue.paused", "127.0.0.1")]
    assert "paused by user:" in browser.get(api.url + "/dashboard/schedules").text
    missing = browser.post(api.url + "/dashboard/schedules/no-such/pause", data={"csrf": token, "confirmed": "yes"})
    assert missing.status_code == 404 and "no schedule" in missing.text and missing.headers["Content-Type"].startswith("text/html")


def test_alerts_reports_and_unknown_jobs_render(api, database_url, tmp_path):
    import uuid
    from datetime import datetime, timezone

    from domain import alerts, reports
    from tests.integration.test_reports import _store

    alerts.open_or_touch("jobs.failure_rate", ("actor", "maintenance.ping"), {"rate": 0.5})
    made = reports.generate("daily", _store(database_url, tmp_path), now=datetime(2026, 12, 1, 3, tzinfo=timezone.utc),
                            zone="UTC")
    browser = signed_in(api.url, create_user("superadmin"))
    assert "jobs.failure_rate" in browser.get(api.url + "/dashboard/alerts").text
    assert "jobs.failure_rate" in browser.get(api.url + "/dashboard/").text
    unknown = browser.get(f"{api.url}/dashboard/jobs/{uuid.uuid4()}")
    assert unknown.status_code == 404 and "no job" in unknown.text
    assert browser.get(api.url + "/dashboard/jobs?state=nonsense").status_code == 422
    listed = browser.get(api.url + "/dashboard/reports").text
    assert f"/dashboard/reports/{made['report_id']}.csv" in listed
    csv = browser.get(f"{api.url}/dashboard/reports/{made['report_id']}.csv")
    assert csv.headers["Content-Disposition"].startswith("attachment") and csv.text == reports.render(
        reports.get(made["report_id"]), "csv")
    html = browser.get(f"{api.url}/dashboard/reports/{made['report_id']}.html")
    assert html.headers["Content-Type"].startswith("text/html") and "<html" in html.text.lower()


def test_bulk_retry_takes_what_the_jobs_filter_selects(api, sql):
    chosen = [_dead_job(api, sql) for _ in range(3)]
    other = _dead_job(api, sql)
    sql("UPDATE lamplighter.job_history SET error_message = 'something else' WHERE job_id = %s", (other,))
    browser = signed_in(api.url, create_user("operator"))
    page = browser.get(api.url + "/dashboard/jobs?state=dead&error=boom")
    assert all(job_id[:8] in page.text for job_id in chosen) and other[:8] not in page.text
    first = browser.get(api.url + "/dashboard/jobs?state=dead&error=boom&limit=2").text
    following = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = browser.get(api.url + "/dashboard/jobs" + following).text
    assert sorted(j[:8] for j in chosen if j[:8] in first or j[:8] in second) == sorted(j[:8] for j in chosen)
    assert sum(j[:8] in second for j in chosen) == 1 and 'id="next-page"' not in second
    form = {"csrf": csrf_of(page.text), "error": "boom", "actor": "maintenance.ping", "limit": "2"}
    asked = browser.post(api.url + "/dashboard/jobs/retry", data=form)
    assert "the 2 dead job(s) this filter selects" in asked.text
    done = browser.post(api.url + "/dashboard/jobs/retry", data={**form, "limit": "10", "confirmed": "yes"})
    assert "3 of 3 dead job(s) queued again" in done.text
    assert "queued again" not in browser.get(done.url).text  # shown once
    # A link cannot put its own words in the dashboard's notice.
    spoof = browser.get(api.url + "/dashboard/jobs?done=Session+expired%3A+sign+in+at+evil.example").text
    assert "evil.example" not in spoof and 'class="notice"' not in spoof
    assert [jobs.get(j).state for j in chosen] == ["queued"] * 3 and jobs.get(other).state == "dead"
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'job.redriven' "
               "AND source_address = '127.0.0.1'")[0][0] == 3


def test_workers_show_what_each_runs(api, sql, broker):
    job_id = _dead_job(api, sql)
    sql("UPDATE dramatiq.queue SET state = 'running', worker_id = %s, finished_at = NULL WHERE message_id = %s",
        (str(broker.worker_id), job_id))
    browser = signed_in(api.url, create_user("viewer"))
    for path in ("/dashboard/workers", "/dashboard/"):
        page = browser.get(api.url + path).text
        assert f'<a href="/dashboard/jobs/{job_id}">maintenance.ping</a>' in page, path
