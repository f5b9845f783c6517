"""The notification outbox (lamplighter.notifications, with managed_account_notifications now a
view over it) and alerts as incidents (lamplighter.alerts)."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0010_notifications_alerts.sql")
