"""The audit log as notifications.security_alerts reads it (queries in sql/security_alerts.sql)."""
from __future__ import annotations

from datetime import datetime

from storage.audit import AuditEntry
from storage.queries import rows, runner

execute = runner("security_alerts")


def events_after(after_id: int, *, settle_seconds: float, limit: int) -> list[AuditEntry]:
    return [AuditEntry(**row) for row in rows(execute(
        "security_events_after", {"after_id": after_id, "settle_seconds": settle_seconds, "limit": limit}))]


def start_position(lookback_seconds: float) -> int:
    return execute("security_start_position", {"lookback_seconds": lookback_seconds}).fetchone()[0]


def failed_logins_for_account(target_id: str, *, until: datetime, window_seconds: float,
                              target_type: str = "user") -> int:
    """Failed sign-ins of one account (``user``, by id) or of one address no account has
    (``login``, by domain.users.login_key) in the window."""
    return execute("security_failed_logins_for_account",
                   {"target_id": target_id, "target_type": target_type, "until": until,
                    "window_seconds": window_seconds}).fetchone()[0]


def failed_logins_from_address(source: str, *, until: datetime, window_seconds: float,
                               burst_accounts: list[str]) -> tuple[int, int]:
    return tuple(execute("security_failed_logins_from_address", {
        "source": source, "until": until, "window_seconds": window_seconds,
        "burst_accounts": burst_accounts}).fetchone())


def address_seen_before(user_id: str, source: str, *, before: datetime, days: int, event_id: int) -> bool:
    return execute("security_address_seen_before", {"user_id": user_id, "source": source, "before": before,
                                                    "days": days, "event_id": event_id}).fetchone()[0]


def user_role(user_id: str) -> tuple[str, str] | None:
    if not user_id.isdigit():
        return None
    row = execute("security_user_role", {"user_id": int(user_id)}).fetchone()
    return tuple(row) if row else None


def recent_failed_login(kind: str, subject: str, *, quiet_seconds: float) -> bool:
    return execute("security_recent_failed_login", {"kind": kind, "subject": subject,
                                                    "quiet_seconds": quiet_seconds}).fetchone()[0]
