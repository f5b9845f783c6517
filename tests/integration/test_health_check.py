"""monitoring.health_check against a real PostgreSQL, a real worker process and a real SMTP
server on 127.0.0.1: a worker that stops heartbeating opens one alert, its return resolves it
(two mails, no more); `lamplighter health` exits 1 once the newest result is older than twice the
interval (time moved 15 minutes on), and the rules on plain figures."""
from __future__ import annotations

import subprocess
import sys

import actors
from domain import health
from tests.conftest import lamplighter_env, use_database, wait_for
from tests.smtp_server import smtp_server  # noqa: F401  (fixture)


def hold_scheduler_lease(sql):
    sql("INSERT INTO lamplighter.scheduler_lease (holder, acquired_at, renewed_at, expires_at) "
        "VALUES ('tests', lamplighter.now(), lamplighter.now(), lamplighter.now() + interval '1 day')")


def deliver_all(sql):
    for (notification_id,) in sql("SELECT id FROM lamplighter.notifications WHERE status = 'pending' ORDER BY id"):
        assert actors.notifications.deliver.fn(notification_id)["status"] == "delivered"


def test_a_worker_that_stops_heartbeating_opens_one_alert_and_resolves_when_it_is_back(
        database_url, sql, smtp_server, worker_processes):  # noqa: F811
    use_database(database_url, LAMPLIGHTER_SMTP_URL=smtp_server.url(), LAMPLIGHTER_SMTP_FROM="ll@example.org",
                 LAMPLIGHTER_ALERT_RECIPIENTS="address:ops@example.org")
    hold_scheduler_lease(sql)
    worker = worker_processes.start("w1", database_url, sql, threads=1)
    check = actors.monitoring.health_check.fn
    assert check()["failing"] == 0

    worker.pause()  # SIGSTOP: it stops heartbeating; the lease in the tests is 2 s
    wait_for(lambda: check()["alerts_opened"], timeout=15, message="the silent worker's alert")
    again = check()
    assert (again["failing"], again["alerts_opened"]) == (1, 0)  # counted, not opened again
    [(rule, subject, count, details)] = sql("SELECT rule, subject, count, details FROM lamplighter.alerts "
                                            "WHERE resolved_at IS NULL")
    assert (rule, subject, count) == ("health.workers", "workers", 2)
    assert [w["worker"].rsplit(":", 1)[1] for w in details["silent"]] == [str(worker.pid)]

    worker.resume()
    wait_for(lambda: check()["alerts_resolved"], timeout=15, message="the alert resolved")
    assert check() == {"checks": 4, "failing": 0, "alerts_opened": 0, "alerts_resolved": 0, "pruned": 0}
    deliver_all(sql)
    mails = smtp_server.mailbox.received
    assert [m.message["Subject"] for m in mails] == ["Alert: health.workers on check workers",
                                                     "Resolved: health.workers on check workers"]
    assert "stopped heartbeating" in mails[0].message.get_body(("plain",)).get_content()
    [(stored,)] = sql("SELECT count(*) FROM lamplighter.health_checks WHERE NOT ok")
    assert stored >= 2


def test_lamplighter_health_fails_when_no_check_ran_for_twice_the_interval(database_url, sql):
    def cli(**env):
        return subprocess.run([sys.executable, "-m", "console", "health"], capture_output=True, text=True, timeout=60,
                              env=lamplighter_env(DATABASE_URL=database_url, **env))

    never = cli()
    assert never.returncode == 1 and "no health check has run yet" in never.stderr
    hold_scheduler_lease(sql)
    sql("INSERT INTO lamplighter.workers (id, hostname, pid, queues, version) "
        "VALUES (gen_random_uuid(), 'host', 1, '{default}', 'tests')")
    assert actors.monitoring.health_check.fn()["failing"] == 0
    fresh = cli()
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith("healthy: all checks pass") and "scheduler  yes" in fresh.stdout
    # 15 minutes on, nothing ran since: three intervals of 5 minutes, more than two.
    stale = cli(LAMPLIGHTER_CLOCK_OFFSET="900")
    assert stale.returncode == 1
    assert "more than twice the 5 min interval: checks are not running" in stale.stderr
    assert stale.stdout.startswith("FAILING")
    # Within twice the interval (9 minutes on) it still counts.
    assert cli(LAMPLIGHTER_CLOCK_OFFSET="540").returncode == 0


def test_the_rules_on_plain_figures():
    limits = health.Limits(queue_lag=60, min_free_bytes=100)
    fine = health.Figures(round_trip_ms=3, queue_lags={"default": 1}, workers_live=1, lease_holder="s1",
                          lease_current=True, lease_renewed_age=1, free_disk_bytes=500)
    assert all(c.ok for c in health.evaluate(fine, limits))
    bad = health.Figures(round_trip_ms=3000, queue_lags={"default": 61, "mail": 5}, workers_live=0,
                         lease_holder="s1", lease_current=False, lease_renewed_age=40, free_disk_bytes=99)
    verdicts = {c.name: c for c in health.evaluate(bad, limits)}
    assert {n for n, c in verdicts.items() if not c.ok} == {"database", "queue:default", "workers", "scheduler", "disk"}
    assert verdicts["queue:default"].subject == ("queue", "default") and verdicts["queue:mail"].ok
    assert "no leader: lease expired" in verdicts["scheduler"].message
