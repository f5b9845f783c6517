"""Row-level security on every tenant's table: a second wall behind the application's tenant
filter, raised by a session that names its tenant in ``lamplighter.tenant``."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0023_tenant_row_security.sql")
