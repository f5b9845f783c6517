"""The jobs page by actor, queue and tenant over finished jobs: an index for each, in page order."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0022_job_page_indexes.sql")
