"""lamplighter.enqueue() with tenant_id, correlation_id and eta, as a SECURITY DEFINER wrapper of
lamplighter.enqueue_v1 that only granted roles may execute."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0011_sql_enqueue_v1.sql")
