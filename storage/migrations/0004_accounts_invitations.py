"""Managed-account creation requests (queued for the identity provider), the notifications the
creating admin gets when one fails for good, and invitations."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0004_accounts_invitations.sql")
