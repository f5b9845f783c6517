"""Time-ordered (version 7) ids for jobs enqueued by SQL, as the Python sends make them."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0024_message_ids_v7.sql")
