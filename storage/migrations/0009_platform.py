"""Tenants, users, API tokens, dashboard sessions and the audit log (partitioned by month);
lamplighter.job_events becomes a view over the audit log."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0009_platform.sql")
