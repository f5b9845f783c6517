"""Drop the two whole-table indexes on dramatiq.queue that every state change had to update."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0005_lean_queue_indexes.sql")
