"""The dashboard's sign-in rate limit: per account and per address, counted from the audit log's
``user.sign_in_failed`` rows (domain/users.py writes one for every failed attempt), so every web
process shares it and nothing else is stored.

An account with ``PER_ACCOUNT`` failures in the last ``WINDOW_SECONDS``, or an address with
``PER_ADDRESS``, is refused before its password is checked, until old failures leave the window.
A refusal is logged and audited (``user.sign_in_throttled``) but not counted as a failure.
"""
from __future__ import annotations

import structlog

from domain import audit
from domain.errors import Forbidden
from storage import audit as audit_rows
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
    actor = f"user:{user.id}" if user else None
    source = audit.check_source(source)
    by_account, by_address = audit_rows.failed_sign_ins(actor=actor, source=source, window_seconds=WINDOW_SECONDS,
                                                        cap=max(PER_ACCOUNT, PER_ADDRESS))
    limited = "account" if actor and by_account >= PER_ACCOUNT else "address" if by_address >= PER_ADDRESS else None
    if limited is None:
        return
    log.warning("user_sign_in_throttled", user_id=user.id if user else None, limit=limited, source=source)
    audit.record(actor or "anonymous", "user.sign_in_throttled", target_type="user" if user else None,
                 target_id=user.id if user else None, tenant_id=user.tenant_id if user else None, source=source,
                 details={"limit": limited})
    raise TooManyAttempts(REFUSED)
