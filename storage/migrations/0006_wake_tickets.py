"""Ticket wake-ups from lamplighter.enqueue() and lamplighter.job_insert_unique()."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0006_wake_tickets.sql")
