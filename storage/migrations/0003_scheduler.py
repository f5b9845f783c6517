"""Scheduler: schedules, the tick table that makes each tick enqueue once, the leader lease."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0003_scheduler.sql")
