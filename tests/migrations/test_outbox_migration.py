"""Migration 0010 moves the managed-account notifications written before it into the outbox and
leaves their old name as a view: unread ones pending (the sweep queues them), read ones
delivered. Checked by putting a database back to the state before 0010 and running it again."""
from storage import connection
from storage.migrations import run_sql_file


def test_old_managed_account_notifications_move_into_the_outbox(database_url, sql):
    sql("DROP VIEW lamplighter.managed_account_notifications")
    sql("""CREATE TABLE lamplighter.managed_account_notifications (
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, recipient text NOT NULL,
               request_id bigint NOT NULL REFERENCES lamplighter.queued_managed_account_creations (id)
                   ON DELETE CASCADE,
               kind text NOT NULL, message text NOT NULL, created_at timestamptz NOT NULL DEFAULT lamplighter.now(),
               read_at timestamptz, UNIQUE (request_id, kind))""")
    ids = [r for (r,) in sql(
        "INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by, status) "
        "SELECT 'f', 'u' || g, 'G', 'F', 'u' || g || '@example.org', 'member', 'a', 'failed' "
        "FROM generate_series(1, 2) g RETURNING id")]
    sql("INSERT INTO lamplighter.managed_account_notifications (recipient, request_id, kind, message, read_at) "
        "VALUES ('admin-3', %s, 'creation_failed', 'first failed', NULL), "
        "       ('boss@example.org', %s, 'creation_failed', 'second failed', '2026-11-01T00:00:00Z')", ids)

    run_sql_file(connection.init_database(), "0010_notifications_alerts.sql")
    assert sql("SELECT relkind FROM pg_class WHERE oid = 'lamplighter.managed_account_notifications'::regclass") \
        == [("v",)]
    moved = sql("SELECT dedupe_key, kind, channel, recipient_kind, recipient, body_text, status, delivered_at IS NULL "
                "FROM lamplighter.notifications ORDER BY id")
    assert moved == [
        (f"managed_account:{ids[0]}:creation_failed", "managed_account.creation_failed", "email", "user", "admin-3",
         "first failed", "pending", True),
        (f"managed_account:{ids[1]}:creation_failed", "managed_account.creation_failed", "email", "address",
         "boss@example.org", "second failed", "delivered", False)]
    view = sql("SELECT recipient, request_id, kind, message, read_at IS NULL FROM "
               "lamplighter.managed_account_notifications WHERE request_id = %s", (ids[1],))
    assert view == [("boss@example.org", ids[1], "creation_failed", "second failed", False)]
    # Running it again changes nothing.
    run_sql_file(connection.init_database(), "0010_notifications_alerts.sql")
    assert sql("SELECT count(*) FROM lamplighter.notifications") == [(2,)]
