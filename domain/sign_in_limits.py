"""The dashboard's sign-in rate limit: per account and per address, counted from the audit log's
``user.sign_in_failed`` rows (domain/users.py writes one for every failed attempt) with the
security alerts' own queries (storage/security_alerts.py), so every web process shares it and
nothing else is stored.

An account with ``PER_ACCOUNT`` failures in the last ``WINDOW_SECONDS``, or an address with
``PER_ADDRESS``, is refused before its password is checked, until old failures leave the window.
A refusal is logged and audited (``user.sign_in_throttled``) but not counted as a failure. An
email address no account has is limited the same way, by its digest (``users.login_key``): were
it not, the refusal after five failures would tell which addresses have an account.
"""
from __future__ import annotations

import structlog

from domain import audit, users
from domain.errors import Forbidden
from storage import schedules, security_alerts
from storage import users as user_rows

log = structlog.get_logger("lamplighter.sign_in")

WINDOW_SECONDS = 900.0
PER_ACCOUNT = 5
PER_ADDRESS = 20
REFUSED = "too many failed sign-ins; wait 15 minutes and try again"


class TooManyAttempts(Forbidden):
    """Refused by the rate limit (the dashboard answers 429)."""


def check(email: str, *, source: str | None) -> None:
    """Return when a sign-in for ``email`` from ``source`` may be tried; TooManyAttempts otherwise."""
    user = user_rows.find_for_login(email.strip()) if isinstance(email, str) else None
    target_type, target_id = ("user", str(user.id)) if user else ("login", users.login_key(email))
    source = audit.check_source(source)
    now = schedules.database_now()
    by_account = security_alerts.failed_logins_for_account(target_id, until=now, window_seconds=WINDOW_SECONDS,
                                                           target_type=target_type)
    by_address = (security_alerts.failed_logins_from_address(source, until=now, window_seconds=WINDOW_SECONDS,
                                                             burst_accounts=[])[0] if source else 0)
    limited = "account" if by_account >= PER_ACCOUNT else "address" if by_address >= PER_ADDRESS else None
    if limited is None:
        return
    log.warning("user_sign_in_throttled", user_id=user.id if user else None, limit=limited, source=source)
    audit.record(f"user:{user.id}" if user else "anonymous", "user.sign_in_throttled", target_type=target_type,
                 target_id=target_id, tenant_id=user.tenant_id if user else None, source=source,
                 details={"limit": limited})
    raise TooManyAttempts(REFUSED)
