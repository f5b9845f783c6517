"""dramatiq's rate limiters, barriers and group callbacks on PostgreSQL (lamplighter.rate_limits,
lamplighter.group_members) and results kept with a job's finish (lamplighter.job_results)."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0017_results_rate_limits.sql")
