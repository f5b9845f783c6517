"""Managed-account creation requests (queries in sql/accounts.sql); what their creators were told
is in the notification outbox (storage/notifications.py), read back here through the
``lamplighter.managed_account_notifications`` view.

The password column holds ``enc:v1:`` values from storage/encryption.py; it is registered in
``encryption.ENCRYPTED_COLUMNS`` so ``maintenance.rotate_encryption_keys`` re-encrypts it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage import encryption
from storage.queries import queries, rows, runner

SQL = queries("accounts")
execute = runner("accounts")
TABLE = "lamplighter.queued_managed_account_creations"
STATUSES = ("pending", "processing", "completed", "failed")

encryption.ENCRYPTED_COLUMNS.append(encryption.EncryptedColumn(TABLE, "id", "encrypted_password"))


@dataclass(frozen=True)
class AccountRequest:
    id: int
    organization_id: str
    username: str
    given_name: str
    family_name: str
    email: str
    role: str
    encrypted_password: str | None = field(repr=False)
    created_by: str
    retry_count: int
    status: str
    next_retry_at: datetime
    claimed_at: datetime | None
    last_error_message: str | None
    idp_user_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Notification:
    id: int
    recipient: str
    request_id: int
    kind: str
    message: str
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True)
class Outcome:
    """What an attempt changes on its request; ``notify`` is (recipient, kind, message).
    ``retry_delay``: the next try is this many seconds after the outcome is recorded, by the
    database's clock (None: next_retry_at stays)."""

    status: str
    retry_count: int
    last_error_message: str | None
    retry_delay: float | None = None
    idp_user_id: str | None = None
    erase_password: bool = False
    notify: tuple[str, str, str] | None = None


def insert(*, organization_id: str, username: str, given_name: str, family_name: str, email: str, role: str,
           created_by: str, encrypted_password: str | None, now: datetime) -> int:
    if encrypted_password is not None and not encryption.is_encrypted(encrypted_password):
        raise encryption.EncryptionError("refusing to store a password that is not encrypted")
    cursor = execute("account_request_insert", {
        "organization_id": organization_id, "username": username, "given_name": given_name,
        "family_name": family_name, "email": email, "role": role, "encrypted_password": encrypted_password,
        "created_by": created_by, "now": now})
    return cursor.fetchone()[0]


def claim_next() -> AccountRequest | None:
    """Mark the oldest due pending request processing and commit; None when nothing is due."""
    found = rows(execute("account_request_claim_next"))
    return AccountRequest(**found[0]) if found else None


def stuck(processing_timeout: float, *, limit: int = 100) -> list[AccountRequest]:
    """Requests claimed more than ``processing_timeout`` seconds ago and still processing."""
    return [AccountRequest(**r) for r in rows(execute(
        "account_request_stuck", {"processing_timeout": processing_timeout, "limit": limit}))]


def finish(request: AccountRequest, outcome: Outcome) -> bool:
    """Record ``outcome`` if ``request``'s claim still holds (its notification is the caller's,
    through the outbox, in the same transaction: domain/accounts.py). Returns False when another
    sweep has taken the request back meanwhile."""
    cursor = execute("account_request_finish", {
        "id": request.id, "claimed_at": request.claimed_at, "status": outcome.status,
        "retry_count": outcome.retry_count, "retry_delay": outcome.retry_delay,
        "last_error_message": outcome.last_error_message, "idp_user_id": outcome.idp_user_id,
        "erase_password": outcome.erase_password})
    return cursor.fetchone() is not None


def get(request_id: int) -> AccountRequest | None:
    found = rows(execute("account_request_get", {"id": request_id}))
    return AccountRequest(**found[0]) if found else None


def list_requests(*, status: str | None = None, limit: int = 50) -> list[AccountRequest]:
    return [AccountRequest(**r) for r in rows(execute("account_request_list", {"status": status, "limit": limit}))]


def count_due() -> int:
    return execute("account_request_count_due").fetchone()[0]


def notifications(recipient: str, *, unread_only: bool = True) -> list[Notification]:
    return [Notification(**r) for r in rows(execute("account_notification_list",
                                                    {"recipient": recipient, "unread_only": unread_only}))]
