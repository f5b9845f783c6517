"""The audit log on the real PostgreSQL: monthly partitions (ahead of time, a default partition
for the rest, archiving by detaching a month), append-only rows, job events as audit rows, and
`lamplighter audit`."""
import json
from datetime import date, datetime, timedelta, timezone

import psycopg2
import pytest

from domain import audit
from domain.errors import InvalidInput
from storage.tenants import TenantScope
from tests.cli_runs import run_cli

EVERY = TenantScope.every()


def _month(today: date, ahead: int) -> date:
    index = today.year * 12 + today.month - 1 + ahead
    return date(index // 12, index % 12 + 1, 1)


def _name(month: date) -> str:
    return f"audit_log_y{month:%Y}m{month:%m}"


def _partition_of(sql, entry_id: int) -> str:
    [(name,)] = sql("SELECT tableoid::regclass::text FROM lamplighter.audit_log WHERE id = %s", (entry_id,))
    return name


def _attached(sql) -> set[str]:
    return {name for (name,) in sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                    "WHERE i.inhparent = 'lamplighter.audit_log'::regclass")}


def test_after_migrate_this_month_and_the_next_two_have_partitions(database_url, sql):
    [(today,)] = sql("SELECT (lamplighter.now() AT TIME ZONE 'UTC')::date")
    expected = {_name(_month(today, n)) for n in range(3)}
    assert expected | {"audit_log_default"} == _attached(sql)
    entry = audit.record("t", "test.recorded")
    assert _partition_of(sql, entry) == f"lamplighter.{_name(_month(today, 0))}"
    assert audit.ensure_partitions() == []  # the release step and the daily job: nothing left to do


def test_a_row_dated_in_a_month_without_a_partition_lands_then_moves_into_its_month(database_url, sql, db_clock):
    far = datetime.now(timezone.utc) + timedelta(days=400)
    db_clock.set(far)
    month = far.date().replace(day=1)
    assert _name(month) not in _attached(sql)
    entry = audit.record("t", "test.far_ahead", details={"n": 1})
    assert _partition_of(sql, entry) == "lamplighter.audit_log_default"
    # The daily job, run in that month, creates it and the rows waiting for it move in, unchanged.
    assert _name(month) in audit.ensure_partitions()
    assert _partition_of(sql, entry) == f"lamplighter.{_name(month)}"
    assert sql("SELECT actor, action, details FROM lamplighter.audit_log WHERE id = %s", (entry,)) == [
        ("t", "test.far_ahead", {"n": 1})]
    assert sql("SELECT count(*) FROM lamplighter.audit_log_default") == [(0,)]


def test_the_daily_job_creates_the_months_ahead(broker, sql, db_clock):
    import actors

    db_clock.set(datetime.now(timezone.utc) + timedelta(days=95))  # past the months migrate made
    month = db_clock.now().date().replace(day=1)
    report = actors.audit.create_partitions.fn()
    assert report["created"] and set(report["created"]) <= {_name(_month(month, n)) for n in range(3)}
    assert {_name(_month(month, n)) for n in range(3)} <= _attached(sql)
    assert actors.audit.create_partitions.fn() == {"created": []}


def test_the_release_step_creates_the_months_ahead(database_url, sql):
    from console import processes
    from tests.conftest import use_database

    later = datetime.now(timezone.utc) + timedelta(days=200)
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=str(200 * 86400))  # every connection's clock
    processes.release()
    month = later.date().replace(day=1)
    assert {_name(_month(month, n)) for n in range(3)} <= _attached(sql)


def test_archiving_detaches_a_past_month_and_dropping_removes_it(database_url, sql, db_clock):
    this_month = db_clock.now().date().replace(day=1)
    old = audit.record("t", "test.old")
    db_clock.set(datetime.now(timezone.utc) + timedelta(days=40))  # that month is over
    audit.ensure_partitions()
    current = db_clock.now().date().replace(day=1)
    new = audit.record("t", "test.new")
    with pytest.raises(InvalidInput):
        audit.archive_month(current, by="t")  # the month being written
    detached = audit.archive_month(this_month, by="cli:ops")
    assert detached == f"lamplighter.{_name(this_month)}"
    assert _name(this_month) not in _attached(sql)
    ids = [i for (i,) in sql("SELECT id FROM lamplighter.audit_log")]
    assert old not in ids and new in ids
    assert sql(f"SELECT action FROM {detached}") == [("test.old",)]  # the month, kept outside the log
    assert audit.archive_month(this_month, by="cli:ops") is None
    assert [p.attached for p in audit.partitions() if p.name == _name(this_month)] == [False]
    with pytest.raises(InvalidInput, match="still in the log"):
        audit.drop_archived_month(current, by="t")
    assert audit.drop_archived_month(this_month, by="cli:ops") == detached
    assert sql("SELECT to_regclass(%s)", (detached,)) == [(None,)]
    assert [a for (a,) in sql("SELECT action FROM lamplighter.audit_log WHERE actor = 'cli:ops' ORDER BY id")] == [
        "audit.month_archived", "audit.month_dropped"]


def test_audit_rows_cannot_be_changed_or_deleted(database_url, sql):
    entry = audit.record("t", "test.kept")
    partition = _partition_of(sql, entry)
    for statement in ("UPDATE lamplighter.audit_log SET actor = 'mallory' WHERE id = %(id)s",
                      "DELETE FROM lamplighter.audit_log WHERE id = %(id)s",
                      f"UPDATE {partition} SET actor = 'mallory' WHERE id = %(id)s",
                      f"DELETE FROM {partition} WHERE id = %(id)s",
                      "TRUNCATE lamplighter.audit_log"):
        with pytest.raises(psycopg2.errors.ObjectNotInPrerequisiteState, match="append-only"):
            sql(statement, {"id": entry})
    assert sql("SELECT actor FROM lamplighter.audit_log WHERE id = %s", (entry,)) == [("t",)]


def test_details_never_keep_a_secret_and_bad_rows_are_refused(database_url, sql):
    token = "llt_" + "x" * 43
    audit.record("t", "test.scrubbed", details={"password": "hunter2hunter2", "nested": {"api_key": "k"},
                                                "note": f"leaked {token} here", "list": [token]})
    [(details,)] = sql("SELECT details FROM lamplighter.audit_log")
    assert details == {"password": "[REDACTED]", "nested": {"api_key": "[REDACTED]"},
                       "note": "leaked [REDACTED] here", "list": ["[REDACTED]"]}
    with pytest.raises(ValueError):
        audit.record("t", "NotAnAction")
    with pytest.raises(InvalidInput):
        audit.record("t", "test.source", source="not-an-address")


def test_job_events_are_audit_rows_with_the_jobs_tenant(broker, sql):
    import actors
    from storage import jobs

    message = actors.maintenance.ping.send_with_options(kwargs={"note": "x"}, tenant_id="acme")
    assert jobs.cancel(message.message_id, by="cli:ops@host") == "cancelled"
    jobs.requeue(message.message_id, by="user:3", detail={"edited_args": False})
    assert sql("SELECT actor, action, target_type, target_id, tenant_id FROM lamplighter.audit_log ORDER BY id") == [
        ("cli:ops@host", "job.cancelled", "job", message.message_id, "acme"),
        ("user:3", "job.redriven", "job", message.message_id, "acme")]
    assert [(e.event, e.requested_by) for e in jobs.get(message.message_id).events] == [
        ("cancelled", "cli:ops@host"), ("redriven", "user:3")]
    # One record: the events are the audit rows, and pruning a job leaves them.
    assert sql("SELECT relkind FROM pg_class WHERE oid = 'lamplighter.job_events'::regclass") == [("v",)]
    assert sql("DELETE FROM lamplighter.job_events") == 0
    assert sql("SELECT count(*) FROM lamplighter.audit_log") == [(2,)]


def test_a_jobs_events_are_read_through_the_target_index(database_url, sql):
    from storage.queries import queries

    sql("INSERT INTO lamplighter.audit_log (actor, action, target_type, target_id) "
        "SELECT 'x', 'job.redriven', 'job', gen_random_uuid()::text FROM generate_series(1, 5000)")
    sql("ANALYZE lamplighter.audit_log")
    plan = "\n".join(row[0] for row in sql("EXPLAIN " + queries("jobs")["job_events_for_job"],
                                             {"job_id": "6c4f3a0e-8f7b-4f0e-9d7e-2b8b7c1d2e3f"}))
    assert "target_type_target_id_at_idx" in plan, plan


def test_queue_and_schedule_controls_are_audited(broker, sql, monkeypatch, capsys):
    from scheduler import sync, ticks
    from storage.schedules import Definition

    assert run_cli(monkeypatch, capsys, "queue", "pause", "maintenance")[0] == 0
    assert run_cli(monkeypatch, capsys, "queue", "resume", "maintenance")[0] == 0
    sync.sync([Definition(key="nightly", actor_name="maintenance.ping", queue_name="maintenance", priority=0,
                          max_attempts=4, concurrency_key=None, concurrency_limit=None, cron="0 2 * * *", zone="UTC",
                          args=[], kwargs={}, misfire="run_once", grace_seconds=60.0, overlap="allow")])
    ticks.set_paused("nightly", True, by="cli:ops")
    run = ticks.run_now("nightly", by="user:4")
    rows = sql("SELECT actor, action, target_type, target_id, details->>'job_id' FROM lamplighter.audit_log "
               "ORDER BY id")
    assert [row[1:4] for row in rows] == [("queue.paused", "queue", "maintenance"),
                                          ("queue.resumed", "queue", "maintenance"),
                                          ("schedule.paused", "schedule", "nightly"),
                                          ("schedule.run_now", "schedule", "nightly")]
    assert rows[0][0].startswith("cli:") and rows[2][0] == "cli:ops"
    assert rows[3][0] == "user:4" and rows[3][4] == run.job_id


# ---- `lamplighter audit` -------------------------------------------------------------------

def test_the_audit_verb_lists_newest_first_with_filters(database_url, monkeypatch, capsys):
    audit.record("user:1", "user.created", target_type="user", target_id=5, tenant_id="acme")
    audit.record("token:2", "job.redriven", target_type="job", target_id="j-1", tenant_id="globex")
    audit.record("user:1", "user.disabled", target_type="user", target_id=5, tenant_id="acme",
                 source="198.51.100.4", details={"email": "e@example.com"})

    def listed(*argv):
        code, out, _ = run_cli(monkeypatch, capsys, "audit", "--json", *argv)
        assert code == 0
        return [(r["actor"], r["action"]) for r in json.loads(out)]

    assert listed() == [("user:1", "user.disabled"), ("token:2", "job.redriven"), ("user:1", "user.created")]
    assert listed("--actor", "token:2") == [("token:2", "job.redriven")]
    assert listed("--action", "user.*") == [("user:1", "user.disabled"), ("user:1", "user.created")]
    assert listed("--action", "user.created") == [("user:1", "user.created")]
    assert listed("--tenant", "globex") == [("token:2", "job.redriven")]
    assert listed("--since", "1h", "--limit", "1") == [("user:1", "user.disabled")]
    assert listed("--since", (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()) == []
    code, out, _ = run_cli(monkeypatch, capsys, "audit")
    table = out.splitlines()
    assert code == 0
    assert table[0].split() == ["AT", "ACTOR", "ACTION", "TARGET", "TENANT", "SOURCE", "DETAILS"]
    assert table[1].split()[1:6] == ["user:1", "user.disabled", "user:5", "acme", "198.51.100.4"]


@pytest.mark.parametrize("argv", [["audit", "--since", "yesterday"], ["audit", "--since", "-3d"],
                                  ["audit", "--tenant", "Not A Tenant"], ["audit", "--limit", "0"]])
def test_the_audit_verb_refuses_bad_arguments_in_one_line(argv, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli(monkeypatch, capsys, *argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("lamplighter audit")
