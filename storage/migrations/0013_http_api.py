"""The HTTP API's tables and indexes: Idempotency-Key records, and a trigram index on the
history's error text for `GET /api/jobs?error=...`."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0013_http_api.sql")
