"""Upgrading from the previous release: the job events kept in lamplighter.job_events (a table
until migration 0009) become audit rows, unchanged, in their months' partitions, and the view
of the same name shows them as before."""
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2

from storage import connection, schema
from tests.conftest import use_database, with_database
from tests.migrations.catalog import DECLARED, describe


def test_job_events_of_the_previous_release_become_audit_rows(server_url, sql):
    sql("SELECT 1")  # the fixture's database exists; this test makes its own
    name = f"lamplighter_upgrade_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        use_database(url)
        db = connection.init_database()
        db.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {schema.SCHEMA}")
        assert schema._runner(db).up(target="0008_invitation_expired_at")[-1] == "0008_invitation_expired_at"
        job = str(uuid.uuid4())
        earlier = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=62)
        old = psycopg2.connect(url)
        old.autocommit = True
        cur = old.cursor()
        cur.execute("INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, tenant_id) "
                    "VALUES (%s, 'maintenance', 'maintenance.ping', '{}', 'acme')", (job,))
        cur.execute("INSERT INTO lamplighter.job_events (job_id, at, event, requested_by, detail) VALUES "
                    "(%s, %s, 'cancelled', 'cli:ops@host', '{}'), "
                    "(%s, %s, 'redriven', NULL, '{\"edited_args\": true}')",
                    (job, earlier, job, earlier + timedelta(hours=1)))
        assert schema.migrate()[0] == "0009_platform"  # and any later ones (0010: the outbox)
        cur.execute("SELECT actor, action, target_type, target_id, tenant_id, at, details, "
                    "       tableoid::regclass::text FROM lamplighter.audit_log ORDER BY id")
        month = f"lamplighter.audit_log_y{earlier:%Y}m{earlier:%m}"
        assert cur.fetchall() == [
            ("cli:ops@host", "job.cancelled", "job", job, "acme", earlier, {}, month),
            ("unknown", "job.redriven", "job", job, "acme", earlier + timedelta(hours=1), {"edited_args": True}, month)]
        cur.execute("SELECT job_id::text, event, requested_by, detail FROM lamplighter.job_events ORDER BY at")
        assert cur.fetchall() == [(job, "cancelled", "cli:ops@host", {}),
                                  (job, "redriven", "unknown", {"edited_args": True})]
        assert describe(old) == DECLARED.read_text()
        old.close()
    finally:
        connection.reset()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
