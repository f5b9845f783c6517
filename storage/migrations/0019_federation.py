"""OpenID Federation publishing: the two key sets (private halves encrypted), the rotation
workflow's state, and the signed documents by version (issue 19)."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0019_federation.sql")
