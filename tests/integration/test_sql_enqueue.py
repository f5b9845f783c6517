"""SQL enqueue (lamplighter.enqueue, migration 0011) and least privilege: a login role holding only
lamplighter_enqueue enqueues with every option, and can read or change nothing else."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import peewee
import psycopg2
import psycopg2.errors
import pytest

from storage import enqueue_role
from tests.conftest import wait_for
from tests.sql_roles import create_login, drop_login

SCHEMAS = ("lamplighter", "dramatiq")


@pytest.fixture
def registered(sql):
    """maintenance.ping as its workers register it (lamplighter.actors), without starting one."""
    sql("INSERT INTO lamplighter.actors (name, queue_name, options) "
        "VALUES ('maintenance.ping', 'maintenance', '{\"max_retries\": 3}')")


def one(conn, text, params=None):
    cur = conn.cursor()
    cur.execute(text, params)
    return cur.fetchone()


def job_row(sql, job_id):
    [row] = sql("SELECT state, queue_name, actor_name, priority, tenant_id, correlation_id, enqueued_by, "
                "available_at, enqueued_at, max_attempts, unique_key, message "
                "FROM dramatiq.queue WHERE message_id = %s", (str(job_id),))
    keys = ("state", "queue_name", "actor_name", "priority", "tenant_id", "correlation_id", "enqueued_by",
            "available_at", "enqueued_at", "max_attempts", "unique_key", "message")
    return dict(zip(keys, row))


# ---- the restricted role -----------------------------------------------------------------------

def test_role_with_only_the_enqueue_grant_enqueues_with_tenant_correlation_and_eta(registered, sql, enqueue_login):
    eta = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=2)
    conn = enqueue_login.connect()
    try:
        [job_id] = one(conn, "SELECT lamplighter.enqueue('maintenance.ping', '{\"note\": \"least privilege\"}', "
                             "tenant_id => 'family-7', correlation_id => 'req-42', eta => %s)", (eta,))
    finally:
        conn.close()
    job = job_row(sql, job_id)
    assert (job["state"], job["queue_name"], job["actor_name"]) == ("queued", "maintenance", "maintenance.ping")
    assert (job["tenant_id"], job["correlation_id"]) == ("family-7", "req-42")
    assert job["available_at"] == eta
    assert job["enqueued_by"] == f"sql:{enqueue_login.role}"
    assert job["max_attempts"] == 4
    assert job["message"]["kwargs"] == {"note": "least privilege"}
    assert job["message"]["options"] == {}  # tenant and correlation live in columns, as Python enqueue puts them


def test_role_with_only_the_enqueue_grant_can_read_or_change_nothing_else(registered, sql, enqueue_login):
    conn = enqueue_login.connect()
    try:
        [job_id] = one(conn, "SELECT lamplighter.enqueue('maintenance.ping', '[]', unique_key => 'held')")
        denied = []

        def refused(statement, params=None):
            try:
                conn.cursor().execute(statement, params)
            except psycopg2.errors.InsufficientPrivilege:
                return True
            denied.append(statement)  # ran: collected, so one run names every hole
            return False

        tables = sql("SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
                     "WHERE schemaname = ANY(%s)", (list(SCHEMAS),))
        assert len(tables) > 10
        for (table,) in tables:
            refused(f"SELECT * FROM {table} LIMIT 1")
            refused(f"DELETE FROM {table}")
            refused(f"TRUNCATE {table}")
        refused("INSERT INTO dramatiq.queue (message_id, message) VALUES (gen_random_uuid(), '{}')")
        refused("UPDATE dramatiq.queue SET priority = -100 WHERE message_id = %s", (job_id,))
        refused("INSERT INTO lamplighter.actors (name, queue_name) VALUES ('evil.actor', 'default')")
        refused("CREATE TABLE lamplighter.squatter (id int)")
        refused("CREATE FUNCTION lamplighter.now(x int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        # The body behind the wrapper would let a caller choose enqueued_by; the engine's
        # functions run with the caller's rights, which do not reach the tables.
        refused("SELECT lamplighter.enqueue_v1('maintenance.ping', '[]', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                "'token:forged')")
        refused("SELECT lamplighter.job_insert_unique(gen_random_uuid(), 'maintenance', 'maintenance.ping', '{}', 0, "
                "0, 1, 'k', NULL, 'ignore', NULL, NULL, NULL, NULL, 'x', NULL)")
        refused("SELECT * FROM lamplighter.job_rescue_v1(ARRAY[%s::uuid], ARRAY[NULL::bigint], 'forged')", (job_id,))
        assert denied == []
    finally:
        conn.close()
    assert sql("SELECT count(*), min(priority) FROM dramatiq.queue") == [(1, 0)]
    # No table, sequence or view of either schema is open to the role, whatever its privilege.
    open_relations = sql("""
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND (has_table_privilege(%s, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
               OR (c.relkind = 'S' AND has_sequence_privilege(%s, c.oid, 'USAGE, SELECT, UPDATE')))""",
                         (list(SCHEMAS), enqueue_login.role, enqueue_login.role))
    assert open_relations == []
    # Of the functions it may execute, only lamplighter.enqueue runs with more rights than its own.
    definers = sql("""
        SELECT p.oid = %s::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%s) AND p.prosecdef AND has_function_privilege(%s, p.oid, 'EXECUTE')""",
                   (enqueue_role.ENQUEUE_FUNCTION, list(SCHEMAS), enqueue_login.role))
    assert definers == [(True,)]
    assert sql("SELECT has_schema_privilege(%s, 'dramatiq', 'USAGE'), "
               "has_schema_privilege(%s, 'lamplighter', 'CREATE')",
               (enqueue_login.role, enqueue_login.role)) == [(False, False)]


def test_a_role_without_the_grant_may_not_execute_enqueue(registered, sql, database_url):
    # PUBLIC's default EXECUTE is revoked: schema usage alone does not reach the definer function.
    login = create_login(database_url, "GRANT USAGE ON SCHEMA lamplighter TO {role}")
    try:
        conn = login.connect()
        try:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="function enqueue"):
                one(conn, "SELECT lamplighter.enqueue('maintenance.ping')")
        finally:
            conn.close()
    finally:
        drop_login(database_url, login)
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]


# ---- the new options ------------------------------------------------------------------------

def test_jobs_enqueued_by_sql_get_time_ordered_version_7_ids(registered, sql):
    """As the Python sends' ids (storage/message_ids.py): the clock's milliseconds first, so a job
    enqueued by SQL sits with the jobs enqueued around it in every index keyed by job id."""
    clock_ms = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    [(before,)] = sql(clock_ms)
    ids = [sql("SELECT lamplighter.enqueue('maintenance.ping')")[0][0] for _ in range(3)]
    ids.append(sql("SELECT lamplighter.enqueue('maintenance.ping', unique_key => 'v7')")[0][0])
    [(after,)] = sql(clock_ms)
    parsed = [uuid.UUID(str(job_id)) for job_id in ids]
    assert [(p.version, p.variant) for p in parsed] == [(7, uuid.RFC_4122)] * 4
    stamps = [p.int >> 80 for p in parsed]  # the first 48 bits: Unix time in milliseconds
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after
    assert [job_row(sql, job_id)["message"]["message_id"] for job_id in ids] == [str(p) for p in parsed]
    assert len(set(ids)) == 4


def test_eta_in_the_future_sets_available_at_and_a_past_eta_means_now(registered, sql):
    eta = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    [(later,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', eta => %s)", (eta,))
    [(past,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', eta => now() - interval '1 hour')")
    [(unique,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', eta => %s, unique_key => 'at-eta')", (eta,))
    assert job_row(sql, later)["available_at"] == eta
    job = job_row(sql, past)
    assert job["available_at"] == job["enqueued_at"]
    job = job_row(sql, unique)
    # Unique jobs go through job_insert_unique, which takes a delay in milliseconds (rounded up).
    assert timedelta(0) <= job["available_at"] - eta < timedelta(milliseconds=1)
    assert job["unique_key"] == "at-eta"


def test_tenant_and_correlation_reach_the_columns_with_a_unique_key_too(registered, sql):
    [(job_id,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '[]', unique_key => 'k', "
                      "tenant_id => 't-1', correlation_id => 'c-1', delay => '10 minutes')")
    job = job_row(sql, job_id)
    assert (job["tenant_id"], job["correlation_id"]) == ("t-1", "c-1")
    assert job["available_at"] - job["enqueued_at"] == timedelta(minutes=10)
    assert job["enqueued_by"] == "sql:" + sql("SELECT session_user")[0][0]


def test_delay_and_eta_together_are_refused(registered, sql):
    with pytest.raises(psycopg2.errors.InvalidParameterValue, match="delay or eta, not both"):
        sql("SELECT lamplighter.enqueue('maintenance.ping', delay => '1 minute', eta => now() + interval '1 hour')")
    with pytest.raises(psycopg2.errors.InvalidParameterValue, match="must not be negative"):
        sql("SELECT lamplighter.enqueue('maintenance.ping', delay => '-1 minute')")
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]


def test_six_argument_calls_of_the_previous_release_still_work(registered, sql):
    [(positional,)] = sql("SELECT lamplighter.enqueue('maintenance.ping', '[\"p\"]', NULL, '5 minutes', 7, 'six')")
    [(again,)] = sql("SELECT lamplighter.enqueue(actor => 'maintenance.ping', args => '[]', queue => 'maintenance', "
                     "delay => '0', priority => 1, unique_key => 'six')")
    [(short,)] = sql("SELECT lamplighter.enqueue('maintenance.ping')")
    [(typed,)] = sql("SELECT lamplighter.enqueue('maintenance.ping'::text, '{}'::jsonb, 'other'::text, "
                     "'1 hour'::interval, 2::integer, NULL::text)")
    assert positional == again
    job = job_row(sql, positional)
    assert (job["priority"], job["available_at"] - job["enqueued_at"], job["message"]["args"]) == (
        7, timedelta(minutes=5), ["p"])
    assert (job["tenant_id"], job["correlation_id"]) == (None, None)
    assert job_row(sql, short)["queue_name"] == "maintenance"
    assert (job_row(sql, typed)["queue_name"], job_row(sql, typed)["priority"]) == ("other", 2)


def test_unknown_actor_is_still_a_clear_error(registered, sql, enqueue_login):
    conn = enqueue_login.connect()
    try:
        with pytest.raises(psycopg2.errors.InvalidParameterValue, match="unknown actor no.such.actor") as caught:
            one(conn, "SELECT lamplighter.enqueue('no.such.actor', '[]', tenant_id => 't')")
    finally:
        conn.close()
    assert "register actors" in caught.value.diag.message_hint


# ---- the release step's role ----------------------------------------------------------------

def _database(url: str) -> peewee.PostgresqlDatabase:
    """A peewee database of its own (the release step's kind) on ``url``."""
    return peewee.PostgresqlDatabase(urlparse(url).path.lstrip("/"), dsn=url, autorollback=False)


def test_release_step_grants_an_existing_role_again_and_changes_nothing(database_url, sql):
    def acl():
        return sql("SELECT proacl::text[] FROM pg_proc WHERE oid = %s::regprocedure",
                   (enqueue_role.ENQUEUE_FUNCTION,))

    before = acl()
    db = _database(database_url)
    try:
        assert enqueue_role.ensure(db) and enqueue_role.ensure(db)
    finally:
        db.close()
    assert acl() == before
    assert sql("SELECT has_function_privilege('lamplighter_enqueue', %s, 'EXECUTE'), "
               "has_function_privilege('public', %s, 'EXECUTE')",
               (enqueue_role.ENQUEUE_FUNCTION, enqueue_role.ENQUEUE_FUNCTION)) == [(True, False)]


class RecordedLog:
    """Stands in for a module's structlog logger: the events it logs, by level."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        return lambda event, **fields: self.events.append((level, event, fields))


def test_release_step_without_createrole_warns_and_goes_on(database_url, sql, monkeypatch):
    role = f"lamplighter_enqueue_{uuid.uuid4().hex[:8]}"
    migrating = create_login(database_url)  # LOGIN, no CREATEROLE
    monkeypatch.setattr(enqueue_role, "log", recorded := RecordedLog())
    db = _database(migrating.url)
    try:
        assert enqueue_role.ensure(db, role=role) is False
    finally:
        db.close()
        drop_login(database_url, migrating)
    [(level, event, fields)] = recorded.events
    assert (level, event) == ("warning", "enqueue_role_not_created")
    assert "CREATEROLE" in fields["reason"] and f"CREATE ROLE {role} NOLOGIN" in fields["fix"]
    assert sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [(0,)]


def test_two_release_steps_creating_the_role_at_once_both_succeed(database_url, server_url, sql):
    # Another database's release step has created the role and not committed yet: ours waits on
    # it, then finds it there (unique_violation), and grants.
    role = f"lamplighter_enqueue_{uuid.uuid4().hex[:8]}"
    other = psycopg2.connect(server_url)
    db = _database(database_url)
    results = []
    try:
        other.cursor().execute(f"CREATE ROLE {role} NOLOGIN")  # open transaction
        racer = threading.Thread(target=lambda: results.append(enqueue_role.ensure(db, role=role)))
        racer.start()
        wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                             "AND query LIKE %s", (f"CREATE ROLE {role}%",)) == [(1,)],
                 message="the second CREATE ROLE waiting on the first")
        other.commit()
        racer.join(timeout=20)
        assert results == [True]
        assert sql("SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                   (role, enqueue_role.ENQUEUE_FUNCTION)) == [(True,)]
    finally:
        db.close()
        other.rollback()
        other.autocommit = True
        if sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [(1,)]:
            sql(f"DROP OWNED BY {role}")  # the grants in this database
            sql(f"DROP ROLE {role}")
        other.close()
