"""invitations.expired_at: when an invitation was marked expired, so it is deleted 30 days later."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0008_invitation_expired_at.sql")
