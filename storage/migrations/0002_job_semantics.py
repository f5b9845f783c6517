"""Unique keys, concurrency slots, job events, and the lamplighter.enqueue() SQL function."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0002_job_semantics.sql")
