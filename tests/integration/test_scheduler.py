"""The scheduler against a real PostgreSQL: sync, ticks enqueued exactly once, misfire and
overlap policies, the lease, runtime control. Time moves through the session's
``lamplighter.clock_offset`` (the injectable clock), never by waiting."""
import json
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from scheduler import sync, ticks
from storage import connection, schedules
from storage.schedules import Definition
from tests.conftest import lamplighter_env

UTC = timezone.utc


def definition(key="maint.ping", **changes) -> Definition:
    base = Definition(key=key, actor_name="maintenance.ping", queue_name="maintenance", priority=0, max_attempts=4,
                      concurrency_key=None, concurrency_limit=None, cron="* * * * *", zone="UTC", args=[],
                      kwargs={"note": key}, misfire="run_once", grace_seconds=60.0, overlap="allow")
    return replace(base, **changes)


def set_now(moment: datetime) -> None:
    """Move this session's database clock so that lamplighter.now() reads ``moment``."""
    db = connection.init_database()
    db.execute_sql("RESET lamplighter.clock_offset")
    real = db.execute_sql("SELECT now()").fetchone()[0]
    db.execute_sql(f"SET lamplighter.clock_offset = '{(moment - real).total_seconds():.6f}'")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def lead(holder="leader") -> str:
    assert schedules.acquire_lease(holder, ttl_seconds=10 * 365 * 86400) is not None  # outlives any set_now
    return holder


def jobs_of(sql, key):
    return sql("SELECT message_id, enqueued_by, message FROM dramatiq.queue "
               "WHERE enqueued_by LIKE %s ORDER BY enqueued_at", (f"cron:{key}@%",))


def ticks_of(sql, key):
    return sql("SELECT fire_at, kind, outcome, job_id, missed FROM lamplighter.schedule_ticks "
               "WHERE schedule_key = %s ORDER BY fire_at", (key,))


# ---- sync --------------------------------------------------------------------------------------

def test_sync_adds_updates_disables_and_never_undoes_a_pause(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    report = sync.sync([definition("a"), definition("b", cron="0 2 * * *", zone="Europe/Berlin")])
    assert (report.added, report.updated, report.disabled) == (["a", "b"], [], [])
    assert sql("SELECT key, next_fire_at FROM lamplighter.schedules ORDER BY key") == [
        ("a", at("2026-05-01 10:01")), ("b", at("2026-05-02 00:00"))]  # 02:00 CEST

    assert sync.sync([definition("a"), definition("b", cron="0 2 * * *", zone="Europe/Berlin")]).unchanged == ["a", "b"]

    ticks.set_paused("b", True, by="cli:ops")
    report = sync.sync([definition("a", kwargs={"note": "new"}),
                        definition("b", cron="0 3 * * *", zone="Europe/Berlin")])
    assert report.updated == ["a", "b"]
    assert sql("SELECT key, paused, kwargs, next_fire_at FROM lamplighter.schedules ORDER BY key") == [
        ("a", False, {"note": "new"}, at("2026-05-01 10:01")),  # arguments changed: same next fire
        ("b", True, {"note": "b"}, at("2026-05-02 01:00"))]  # new expression: new next fire; still paused

    report = sync.sync([definition("b", cron="0 3 * * *", zone="Europe/Berlin")])
    assert report.disabled == ["a"]
    assert sql("SELECT key, enabled, paused FROM lamplighter.schedules ORDER BY key") == [
        ("a", False, False), ("b", True, True)]
    set_now(at("2026-05-01 12:00:10"))
    report = sync.sync([definition("a"), definition("b", cron="0 3 * * *", zone="Europe/Berlin")])
    assert report.updated == ["a"]  # back in the code: enabled, from now on (no catch-up)
    assert sql("SELECT enabled, next_fire_at FROM lamplighter.schedules WHERE key = 'a'") == [
        (True, at("2026-05-01 12:01"))]


def test_migrate_syncs_the_declarations_and_reports_it(database_url):
    env = lamplighter_env(DATABASE_URL=database_url)
    done = subprocess.run([sys.executable, "-m", "console", "migrate"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "schedules:" in done.stdout and "added" in done.stdout


# ---- ticks -------------------------------------------------------------------------------------

def test_a_due_tick_enqueues_one_job_with_its_tick_row(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a", args=[1], kwargs={"x": "y"}, priority=5)])
    holder = lead()
    assert ticks.fire_due(holder) == []  # not due yet
    set_now(at("2026-05-01 10:01:00.250"))
    [result] = ticks.fire_due(holder)
    assert (result.fire_at, result.kind, result.outcome) == (at("2026-05-01 10:01"), "scheduled", "enqueued")
    [(job_id, enqueued_by, message)] = jobs_of(sql, "a")
    assert str(job_id) == result.job_id
    assert uuid.UUID(str(job_id)).version == 7  # time-ordered, as every send's (storage/message_ids.py)
    assert enqueued_by == "cron:a@2026-05-01T10:01:00+00:00"
    assert {k: message[k] for k in ("queue_name", "actor_name", "args", "kwargs", "message_id")} == {
        "queue_name": "maintenance", "actor_name": "maintenance.ping", "args": [1], "kwargs": {"x": "y"},
        "message_id": result.job_id}
    assert sql("SELECT priority, max_attempts, state FROM dramatiq.queue") == [(5, 4, "queued")]
    assert ticks_of(sql, "a") == [(at("2026-05-01 10:01"), "scheduled", "enqueued", job_id, 1)]
    assert sql("SELECT last_fire_at, next_fire_at FROM lamplighter.schedules") == [
        (at("2026-05-01 10:01"), at("2026-05-01 10:02"))]
    assert ticks.fire_due(holder) == []


def test_a_tick_is_never_enqueued_twice_even_after_its_job_was_pruned(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a")])
    holder = lead()
    set_now(at("2026-05-01 10:01:01"))
    assert [r.outcome for r in ticks.fire_due(holder)] == ["enqueued"]
    sql("DELETE FROM dramatiq.queue")  # completed and pruned
    # Someone brings the schedule back to the same tick (a stale leader, a restored row).
    sql("UPDATE lamplighter.schedules SET next_fire_at = %s", (at("2026-05-01 10:01"),))
    [again] = ticks.fire_due(holder)
    assert again.outcome == "already_recorded" and again.job_id is None
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]
    assert len(ticks_of(sql, "a")) == 1


def test_two_schedulers_that_both_believe_they_lead_enqueue_each_tick_once(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition(f"k{i}") for i in range(20)])
    holder = lead()
    moment = at("2026-05-01 10:01:02")
    barrier = threading.Barrier(4)
    errors = []

    def scheduler():
        try:
            set_now(moment)  # peewee: one connection per thread
            barrier.wait()
            for _ in range(3):
                for key in [f"k{i}" for i in range(20)]:
                    ticks.fire_one(key, holder)
                sql("UPDATE lamplighter.schedules SET next_fire_at = %s", (at("2026-05-01 10:01"),))
        except Exception as exc:  # asserted below
            errors.append(exc)
        finally:
            connection.database.close()

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sql("SELECT count(*), count(DISTINCT enqueued_by) FROM dramatiq.queue") == [(20, 20)]
    assert sql("SELECT count(*) FROM lamplighter.schedule_ticks") == [(20,)]


def test_without_the_lease_nothing_fires(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a")])
    lead("someone-else")
    set_now(at("2026-05-01 10:01:01"))
    assert ticks.fire_one("a", "me") is None
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]


@pytest.mark.parametrize("misfire, jobs, outcome", [("run_once", 1, "enqueued"), ("skip", 0, "skipped_misfire")])
def test_three_missed_ticks_give_one_catch_up_with_run_once_and_none_with_skip(database_url, sql, misfire, jobs,
                                                                              outcome):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a", misfire=misfire, grace_seconds=10)])
    holder = lead()
    set_now(at("2026-05-01 10:03:40"))  # 10:01, 10:02 and 10:03 missed; 10:03 is 40 s late
    [result] = ticks.fire_due(holder)
    assert (result.fire_at, result.kind, result.outcome, result.missed) == (
        at("2026-05-01 10:03"), "catch_up", outcome, 3)
    assert len(jobs_of(sql, "a")) == jobs
    assert [(t[0], t[1], t[2], t[4]) for t in ticks_of(sql, "a")] == [(at("2026-05-01 10:03"), "catch_up", outcome, 3)]
    assert sql("SELECT next_fire_at FROM lamplighter.schedules") == [(at("2026-05-01 10:04"),)]


def test_overlap_skip_waits_for_the_previous_run(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a", overlap="skip"), definition("b", overlap="allow")])
    holder = lead()
    set_now(at("2026-05-01 10:01:01"))
    assert {r.key: r.outcome for r in ticks.fire_due(holder)} == {"a": "enqueued", "b": "enqueued"}
    set_now(at("2026-05-01 10:02:01"))  # the 10:01 runs are still waiting
    assert {r.key: r.outcome for r in ticks.fire_due(holder)} == {"a": "skipped_overlap", "b": "enqueued"}
    sql("UPDATE dramatiq.queue SET state = 'running' WHERE enqueued_by LIKE 'cron:a@%%'")
    set_now(at("2026-05-01 10:03:01"))
    assert {r.key: r.outcome for r in ticks.fire_due(holder)}["a"] == "skipped_overlap"
    sql("UPDATE dramatiq.queue SET state = 'completed', finished_at = now() WHERE enqueued_by LIKE 'cron:a@%%'")
    set_now(at("2026-05-01 10:04:01"))
    assert {r.key: r.outcome for r in ticks.fire_due(holder)}["a"] == "enqueued"
    assert [t[2] for t in ticks_of(sql, "a")] == ["enqueued", "skipped_overlap", "skipped_overlap", "enqueued"]


def test_a_berlin_schedule_fires_once_on_both_dst_days(database_url, sql):
    # 02:30 Europe/Berlin: on 29 March 2026 it does not exist (fires at 03:30 CEST = 01:30 UTC);
    # on 25 October 2026 it happens twice (fires at the first, 02:30 CEST = 00:30 UTC).
    set_now(at("2026-03-28 12:00"))
    sync.sync([definition("berlin", cron="30 2 * * *", zone="Europe/Berlin")])
    holder = lead()
    fired = []
    # ... then the scheduler is down from 31 March to 25 October: one catch-up (02:30 CEST on
    # the 24th), and on the fall-back day one run at the first 02:30 only.
    for moment in ["2026-03-29 01:29:59", "2026-03-29 01:30:01", "2026-03-29 02:30:01", "2026-03-30 00:30:01",
                   "2026-10-25 00:00:00"]:
        set_now(at(moment))
        fired += [r.fire_at for r in ticks.fire_due(holder)]
    for moment in ["2026-10-25 00:30:01", "2026-10-25 01:30:01", "2026-10-25 02:30:01"]:
        set_now(at(moment))
        fired += [r.fire_at for r in ticks.fire_due(holder)]
    assert fired == [at("2026-03-29 01:30"), at("2026-03-30 00:30"), at("2026-10-24 00:30"),
                     at("2026-10-25 00:30")]


# ---- lease -------------------------------------------------------------------------------------

def test_lease_is_held_until_it_expires_by_the_database_clock(database_url, sql):
    set_now(at("2026-05-01 10:00:00"))
    first = schedules.acquire_lease("a", ttl_seconds=10)
    assert first is not None and first.previous_holder is None
    assert schedules.acquire_lease("b", ttl_seconds=10) is None
    set_now(at("2026-05-01 10:00:05"))
    assert schedules.acquire_lease("a", ttl_seconds=10) is not None  # renewed until 10:00:15
    set_now(at("2026-05-01 10:00:14"))
    assert schedules.acquire_lease("b", ttl_seconds=10) is None
    # set_now is exact only to the milliseconds between statements: keep clear margins.
    set_now(at("2026-05-01 10:00:15.500"))
    taken = schedules.acquire_lease("b", ttl_seconds=10)
    assert taken.holder == "b" and taken.previous_holder == "a"
    assert not schedules.lease_held("a") and schedules.lease_held("b")
    schedules.release_lease("a")  # not the holder: nothing happens
    assert schedules.lease_held("b")
    schedules.release_lease("b")
    assert schedules.acquire_lease("a", ttl_seconds=10) is not None


# ---- runtime control ---------------------------------------------------------------------------

def test_pause_resume_and_run_now(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a", overlap="skip")])
    holder = lead()
    ticks.set_paused("a", True, by="cli:ops")
    set_now(at("2026-05-01 10:05:01"))
    assert ticks.fire_due(holder) == []
    manual = ticks.run_now("a", by="cli:ops")  # works while paused; overlap does not apply
    assert manual.kind == "manual"
    [(job_id, enqueued_by, _)] = jobs_of(sql, "a")
    assert str(job_id) == manual.job_id and enqueued_by.endswith(" manual by cli:ops")
    assert ticks_of(sql, "a") == [(manual.fire_at, "manual", "enqueued", job_id, 1)]
    set_now(at("2026-05-01 10:07:30"))
    ticks.set_paused("a", False, by="cli:ops")
    # Resumed from now on: the paused period's ticks are not caught up.
    assert sql("SELECT paused, next_fire_at FROM lamplighter.schedules") == [(False, at("2026-05-01 10:08"))]
    with pytest.raises(ticks.ScheduleNotFound):
        ticks.run_now("nope", by="cli:ops")
    sync.sync([])
    with pytest.raises(ticks.ScheduleDisabled):
        ticks.run_now("a", by="cli:ops")


def test_overview_shows_next_three_in_zone_and_the_last_run(database_url, sql):
    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("berlin", cron="0 2 * * sun", zone="Europe/Berlin"), definition("gone")])
    sync.sync([definition("berlin", cron="0 2 * * sun", zone="Europe/Berlin")])
    ticks.run_now("berlin", by="cli:ops")
    views = {v.schedule.key: v for v in ticks.overview()}
    berlin = views["berlin"]
    assert berlin.state == "enabled"
    assert [t.isoformat() for t in berlin.next_fire_times] == [
        "2026-05-03T02:00:00+02:00", "2026-05-10T02:00:00+02:00", "2026-05-17T02:00:00+02:00"]
    assert (berlin.last_tick.kind, berlin.last_tick.outcome, berlin.last_tick.job_state) == (
        "manual", "enqueued", "queued")
    assert (views["gone"].state, views["gone"].next_fire_times) == ("disabled", [])


def test_schedule_verbs_from_the_cli(database_url, sql):
    sync.sync([definition("berlin", cron="30 2 * * *", zone="Europe/Berlin")])
    env = lamplighter_env(DATABASE_URL=database_url)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "console", "schedule", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    listed = cli()
    assert listed.returncode == 0, listed.stderr
    assert "berlin" in listed.stdout and "Europe/Berlin" in listed.stdout and "next:" in listed.stdout
    assert " UTC)" in listed.stdout  # each fire time in its zone and in UTC
    assert cli("pause", "berlin").stdout.strip() == "schedule berlin paused"
    assert "paused by cli:" in cli().stdout
    ran = cli("run", "berlin")
    assert ran.returncode == 0, ran.stderr
    assert sql("SELECT message_id::text FROM dramatiq.queue") == [(ran.stdout.strip(),)]
    assert cli("resume", "berlin").returncode == 0
    shown = json.loads(cli("--json").stdout)
    assert shown[0]["state"] == "enabled" and shown[0]["last_run"]["kind"] == "manual"
    assert len(shown[0]["next_fire_times"]) == 3
    missing = cli("run", "nope")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no schedule 'nope'" in missing.stderr
    usage = cli("pause")
    assert usage.returncode == 2 and "needs a KEY" in usage.stderr


def test_a_leader_that_loses_its_connection_reconnects_and_leads_again(database_url, sql):
    from scheduler import service
    from storage import settings as settings_module

    set_now(at("2026-05-01 10:00:30"))
    sync.sync([definition("a")])
    scheduler = service.Scheduler(settings_module.get(), holder="h1")
    assert scheduler.step() == [] and scheduler.leading
    backend = connection.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    sql("SELECT pg_terminate_backend(%s)", (backend,))
    with pytest.raises(service.DATABASE_ERRORS):
        scheduler.step()
    service._drop_connection()  # what the loop does after a database error
    set_now(at("2026-05-01 10:01:01"))
    assert [r.outcome for r in scheduler.step()] == ["enqueued"]
    assert scheduler.leading
    # A standby does not get the lease while it is renewed; the holder resigns on SIGTERM.
    standby = service.Scheduler(settings_module.get(), holder="h2")
    assert standby.step() == [] and not standby.leading
    scheduler.resign()
    assert standby.step() == [] and standby.leading


BAD_DECLARATION = """
import dramatiq, sys
import actors
from storage.schedules import schedule
dramatiq.actor(lambda: None, actor_name="tests.weekly_digest", queue_name="reports",
               periodic=[schedule("tests.weekly_digest.eu", "0 25 * * sun", zone="Europe/Berlin")])
from console.cli import main
sys.exit(main(["migrate"]))
"""


def test_a_bad_declaration_stops_the_release_step_with_one_line_naming_the_actor(server_url):
    import psycopg2

    from tests.conftest import with_database

    name = "lamplighter_bad_declaration"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server_url, name)
        done = subprocess.run([sys.executable, "-c", BAD_DECLARATION], env=lamplighter_env(DATABASE_URL=url),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr == ("lamplighter migrate: error: bad schedule declaration: tests.weekly_digest: "
                               "schedule 'tests.weekly_digest.eu': invalid cron expression '0 25 * * sun': "
                               "hour field '25': 25 is out of range 0-23\n")
        conn = psycopg2.connect(url)
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('lamplighter.schedules')")
        assert cur.fetchone() == (None,)  # checked before anything was migrated or written
        conn.close()
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_a_scheduled_job_that_waited_an_hour_still_runs(broker, run_worker, sql):
    # periodiq's middleware would drop it (skip_delay=30); the worker here has our middleware list.
    sync.sync([definition("late", cron="* * * * *")])
    holder = lead()
    sql("UPDATE lamplighter.schedules SET next_fire_at = date_trunc('minute', now())")
    [result] = ticks.fire_due(holder)
    sql("UPDATE dramatiq.queue SET enqueued_at = now() - interval '1 hour', "
        "message = jsonb_set(message, '{message_timestamp}', to_jsonb((extract(epoch FROM now()) * 1000 - 3600000)::bigint))")
    run_worker(threads=1)
    from tests.conftest import wait_for

    wait_for(lambda: sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (result.job_id,)) == [("completed",)],
             timeout=20, message="the late scheduled job completed")
