"""A count, per job, of the times a dead worker's rescue handed it back without a recorded start,
and the rescue that keeps it (job_rescue_v3): such a job starts only once its start is committed."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0027_unconfirmed_rescues.sql")
