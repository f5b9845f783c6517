"""The jobs page's waiting jobs, newest first, through an index of their own."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0025_waiting_jobs_page_index.sql")
