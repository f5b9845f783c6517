"""Job events record the address an operator's action came from in the audit log's
source_address (the dashboard's and the API's job actions)."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0020_dashboard.sql")
