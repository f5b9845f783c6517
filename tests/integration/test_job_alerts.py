"""alerts.failed_jobs on the real PostgreSQL: a critical actor that fails for good opens one
incident (one e-mail at a real SMTP server) and resolves with one mail when it succeeds again;
failure rates over an actor's threshold open and resolve their own incident; the decorator's
options are checked."""
import dramatiq
import pytest

import actors
from domain import job_alerts
from tests.conftest import use_database, wait_for
from tests.smtp_server import smtp_server  # noqa: F401

OUTCOME = {"fail": True}


@dramatiq.actor(broker=actors.broker, actor_name="tests.critical_export", queue_name="tests-critical",
                max_retries=0, time_limit=10_000, critical=True)
def critical_export() -> dict:
    if OUTCOME["fail"]:
        raise RuntimeError("the export target refused the upload")
    return {"exported": 1}


def attempts(sql, outcome):
    return sql("SELECT count(*) FROM lamplighter.job_history WHERE actor_name = 'tests.critical_export' "
               "AND outcome = %s", (outcome,))[0][0]


@pytest.fixture
def alert_mail(database_url, smtp_server):  # noqa: F811
    """E-mail to the test's SMTP server; alerts go to one address. Ask for it before `broker`."""
    use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url(), LAMPLIGHTER_SMTP_FROM="ll@example.org",
                 LAMPLIGHTER_ALERT_RECIPIENTS="address:oncall@example.org")
    return smtp_server.mailbox


def test_a_critical_actor_dead_five_times_mails_once_and_its_recovery_mails_once(alert_mail, broker, run_worker,
                                                                                  sql):
    OUTCOME["fail"] = True
    run_worker(threads=2, queues=["tests-critical", "notifications"])
    for _ in range(5):
        critical_export.send()
    wait_for(lambda: attempts(sql, "dead") == 5, message="five dead attempts")
    checked = actors.alerts.failed_jobs.fn(settle_seconds=0)
    assert (checked["critical_opened"], checked["critical_touched"], checked["rate_opened"]) == (1, 4, 0)
    wait_for(lambda: alert_mail.received, message="the alert's e-mail")
    wait_for(lambda: sql("SELECT count(*) FROM lamplighter.notifications WHERE status <> 'delivered'") == [(0,)],
             message="the outbox delivered")
    before = sql("SELECT * FROM lamplighter.alerts")
    again = actors.alerts.failed_jobs.fn(settle_seconds=0)  # sees only the delivery's own attempt
    assert {k: v for k, v in again.items() if k != "attempts"} == dict.fromkeys(again.keys() - {"attempts"}, 0)
    assert sql("SELECT * FROM lamplighter.alerts") == before
    [mail] = alert_mail.received
    assert mail.rcpt_tos == ["oncall@example.org"]
    assert mail.message["Subject"] == "Alert: jobs.critical_failed on actor tests.critical_export"
    assert sql("SELECT rule, count, resolved_at IS NULL FROM lamplighter.alerts") == [
        ("jobs.critical_failed", 5, True)]

    OUTCOME["fail"] = False
    critical_export.send()
    wait_for(lambda: attempts(sql, "completed") == 1, message="a completed attempt")
    assert actors.alerts.failed_jobs.fn(settle_seconds=0)["critical_resolved"] == 1
    wait_for(lambda: len(alert_mail.received) == 2, message="the resolution e-mail")
    wait_for(lambda: sql("SELECT count(*) FROM lamplighter.notifications WHERE status <> 'delivered'") == [(0,)],
             message="the outbox delivered")
    again = actors.alerts.failed_jobs.fn(settle_seconds=0)
    assert {k: v for k, v in again.items() if k != "attempts"} == dict.fromkeys(again.keys() - {"attempts"}, 0)
    assert [m.message["Subject"] for m in alert_mail.received] == [
        "Alert: jobs.critical_failed on actor tests.critical_export",
        "Resolved: jobs.critical_failed on actor tests.critical_export"]
    assert sql("SELECT resolved_by FROM lamplighter.alerts") == [("system:jobs.critical_failed",)]


def test_failures_over_an_actors_threshold_open_a_rate_alert_that_resolves_when_the_window_clears(
        database_url, sql, db_clock):
    for n in range(4):
        sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, outcome) "
            "VALUES (gen_random_uuid(), 1, 'billing.post_usage', 'billing', now(), 'failed')")
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, outcome) "
        "VALUES (gen_random_uuid(), 1, 'reports.daily', 'maintenance', now(), 'failed')")
    policies = {"billing.post_usage": job_alerts.ActorPolicy(failure_threshold=3, failure_window=600)}
    checked = job_alerts.check(policies, settle_seconds=0)
    assert (checked["attempts"], checked["rate_opened"], checked["critical_opened"]) == (5, 1, 0)
    [(rule, subject, details)] = sql("SELECT rule, subject, details FROM lamplighter.alerts")
    assert (rule, subject, details) == ("jobs.failure_rate", "billing.post_usage",
                                        {"failures": 4, "window_s": 600, "threshold": 3})
    assert job_alerts.check(policies, settle_seconds=0)["rate_touched"] == 1  # still over: counted, no notice
    assert sql("SELECT count(*) FROM lamplighter.notifications") == [(1,)]
    db_clock.advance(601)
    assert job_alerts.check(policies, settle_seconds=0)["rate_resolved"] == 1
    assert job_alerts.check(policies, settle_seconds=0)["rate_resolved"] == 0
    assert sql("SELECT kind FROM lamplighter.notifications ORDER BY id") == [("alert.opened",), ("alert.resolved",)]


def test_the_first_check_starts_an_hour_back_not_at_the_beginning_of_the_history(database_url, sql):
    """A deployment that gains the reader with months of history is told about the last hour: the
    dead attempt of a day ago opens nothing, the one of ten minutes ago does, and the watermark
    is kept from the first run on."""
    policies = {"tests.critical_export": job_alerts.ActorPolicy(critical=True)}
    for age in ("1 day", "10 minutes"):
        sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, outcome, "
            "error_type) VALUES (gen_random_uuid(), 1, 'tests.critical_export', 'tests-critical', "
            "now() - %s::interval, 'dead', %s)", (age, f"Old{age.split()[1].capitalize()}"))
    checked = job_alerts.check(policies, settle_seconds=0)
    assert (checked["attempts"], checked["critical_opened"]) == (1, 1)
    [(details,)] = sql("SELECT details FROM lamplighter.alerts")
    assert details["error_type"] == "OldMinutes"
    assert job_alerts.check(policies, settle_seconds=0)["attempts"] == 0


@pytest.mark.parametrize("options, message", [
    ({"critical": "yes"}, "critical must be True or False"),
    ({"failure_threshold": -1}, "failure_threshold must be an integer of at least 0"),
    ({"failure_window": 5}, "failure_window must be an integer of at least 60"),
])
def test_alerting_options_are_checked_at_declaration(options, message):
    with pytest.raises(ValueError, match=message):
        dramatiq.actor(lambda: None, broker=actors.broker, actor_name="tests.bad_alerting", queue_name="tests",
                       **options)


def test_the_actors_options_become_policies():
    found = actors.alerts.policies(actors.broker)
    assert found["tests.critical_export"] == job_alerts.ActorPolicy(critical=True)
    assert found["audit.archive"].critical and not found["reports.daily"].critical
