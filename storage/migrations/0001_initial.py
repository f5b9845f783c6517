"""Queue table (dramatiq-pg compatible), job history, workers, queues, actors, cache."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0001_initial.sql")
