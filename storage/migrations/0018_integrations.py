"""Cloud providers, tenants' integrations with them (OAuth tokens encrypted at rest) and the
providers' file metadata, indexed per integration (issue 21)."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0018_integrations.sql")
