"""Operations jobs (issue 22): health-check results, performance samples, backups and their
restore checks, and license records."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0016_operations.sql")
