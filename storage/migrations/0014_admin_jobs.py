"""Admin jobs (issue 18): audit-archive progress, hourly analytics rollups, stored reports and
the watermarks of the jobs that read the audit log and the job history after a position."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0014_admin_jobs.sql")
