"""Managed accounts at the identity provider (Zitadel): queued creation requests, retried on a
fixed schedule.

An admin's request becomes a row (:func:`request_account`); the per-minute sweep
(:func:`sweep`) claims due rows one at a time and calls the identity provider through the
:class:`IdentityProvider` port (the HTTP adapter lives in actors/zitadel.py). The schedule, with
n the retry count after a transient failure and "now" the database's clock (lamplighter.now(),
which the storage queries apply: the rules here deal in delays, not in times)::

    attempt 1 (retry_count 0) fails -> retry_count 1, next try now + 1 min
    retry 1..4 fails              -> retry_count 2..5, next try now + 5 min, 15 min, 1 h, 4 h
    retry 5 (retry_count 5) fails -> failed, with the last error

A ``Retry-After`` from the provider pushes the next try later, never earlier. Permanent errors
fail the request at once. The provider's user id is derived from the request id
(:func:`derived_user_id`), so a retry after a crash finds the user it created ("already exists",
then a look-up by that id) instead of creating a second one.

The password is decrypted only for the call and erased once the account exists or the request
failed for good. It never reaches a log line, an exception or a job: messages that come back
from the provider are scrubbed of it before they are stored or logged.
"""
from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import structlog

from domain import notifications
from storage import accounts as account_rows
from storage import encryption
from storage.accounts import AccountRequest, Outcome
from storage.clock import Clock
from storage.queries import transaction

log = structlog.get_logger("lamplighter.accounts")

RETRY_DELAYS = (60, 300, 900, 3600, 14400)  # seconds: 1 min, 5 min, 15 min, 1 h, 4 h
MAX_RETRIES = len(RETRY_DELAYS)
MAX_RETRY_AFTER = 24 * 3600  # a provider's Retry-After is honoured up to a day
NOTIFICATION_KIND = "creation_failed"
NOT_ENCRYPTED = ("the password column holds a value that is not encrypted (expected enc:v1:...); it was "
                 "not sent and has been erased. Request the account again through `lamplighter accounts "
                 "create` or domain.accounts.request_account, or insert the row without a password")
_FIELD_LIMIT = 200  # Zitadel's limit on username, names and e-mail
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class AccountError(Exception):
    """Base of the accounts domain's errors. Messages never carry a password."""


class InvalidAccountRequest(AccountError):
    """A request that cannot be queued (missing or malformed field)."""


class AccountsNotConfigured(AccountError):
    """Requests are due but the identity provider is not configured."""


class IdentityProviderError(AccountError):
    """The provider did not do what was asked. Raised by :class:`IdentityProvider` adapters."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class PermanentProviderError(IdentityProviderError):
    """Asking again will not help (invalid argument, unauthenticated, forbidden, not found)."""


class RetryableProviderError(IdentityProviderError):
    """Try later (network error, timeout, rate limit, 5xx); ``retry_after`` in seconds if known."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class AlreadyExists(IdentityProviderError):
    """The provider already has what we asked it to create (HTTP 409)."""


@dataclass(frozen=True)
class HumanUser:
    user_id: str
    organization_id: str
    username: str
    given_name: str
    family_name: str
    email: str
    password: str | None = field(default=None, repr=False)
    password_change_required: bool = True


@dataclass(frozen=True)
class ProviderUser:
    user_id: str
    organization_id: str
    username: str


class IdentityProvider(Protocol):
    def create_human_user(self, user: HumanUser) -> str:
        """Create the user with ``user.user_id``; return its id. Raises AlreadyExists on 409."""

    def get_user(self, user_id: str) -> ProviderUser | None:
        """The user with this id, or None when there is none."""

    def grant_roles(self, user_id: str, organization_id: str, project_id: str, role_keys: tuple[str, ...]) -> None:
        """Grant ``role_keys`` of ``project_id``. Raises AlreadyExists when already granted."""


@dataclass(frozen=True)
class ProviderSettings:
    organization_id: str
    project_id: str = ""  # empty: no role grant
    role_keys: tuple[str, ...] = ()  # empty: the request's own role is the role key
    password_change_required: bool = True
    user_id_prefix: str = "lamplighter-"


def derived_user_id(prefix: str, request_id: int) -> str:
    """The provider's user id for a request: the deployment's prefix and the row id
    ("lamplighter-42"). Deterministic, so a retry can find the user an earlier try created."""
    return f"{prefix}{request_id}"


# ---- requests --------------------------------------------------------------------------------

def request_account(clock: Clock, *, organization_id: str, username: str, given_name: str, family_name: str,
                    email: str, role: str, created_by: str, password: str | None,
                    encrypt: Callable[[str], str] | None = None) -> int:
    """Queue a managed-account creation; returns the request id. The password is encrypted
    before it is stored; None creates the account without one (the provider e-mails the user)."""
    values = {"organization_id": organization_id, "username": username, "given_name": given_name,
              "family_name": family_name, "email": email, "role": role, "created_by": created_by}
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidAccountRequest(f"{name} is required")
        if len(value) > _FIELD_LIMIT:
            raise InvalidAccountRequest(f"{name} is longer than {_FIELD_LIMIT} characters")
    if not _EMAIL.match(email):
        raise InvalidAccountRequest(f"email {email!r} is not an e-mail address")
    if password is not None and (password == "" or len(password) > _FIELD_LIMIT):
        raise InvalidAccountRequest(f"password must be 1 to {_FIELD_LIMIT} characters (or none at all)")
    encrypted = None
    if password is not None:
        encrypted = (encrypt or (lambda value: encryption.keyring().encrypt(value)))(password)
    request_id = account_rows.insert(**{k: v.strip() for k, v in values.items()}, encrypted_password=encrypted,
                                     now=clock.now())
    log.info("managed_account_requested", request_id=request_id, created_by=created_by,
             password_stored=password is not None)
    return request_id


# ---- the schedule ----------------------------------------------------------------------------

def after_transient_failure(request: AccountRequest, message: str, retry_after: float | None = None) -> Outcome:
    """Next try per :data:`RETRY_DELAYS` after now, or failed once the fifth retry has failed."""
    if request.retry_count >= MAX_RETRIES:
        return after_permanent_failure(
            request, f"gave up after {request.retry_count} retries; last error: {message}",
            retry_count=request.retry_count)
    delay = float(RETRY_DELAYS[request.retry_count])
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
    return Outcome(status="pending", retry_count=request.retry_count + 1, last_error_message=message,
                   retry_delay=delay)


def after_permanent_failure(request: AccountRequest, message: str, *, retry_count: int | None = None) -> Outcome:
    notice = (f"The managed account {request.username!r} ({request.email}) for organization "
              f"{request.organization_id} could not be created at the identity provider: {message}")
    return Outcome(status="failed", retry_count=request.retry_count if retry_count is None else retry_count,
                   last_error_message=message, erase_password=True,
                   notify=(request.created_by, NOTIFICATION_KIND, notice))


def after_success(request: AccountRequest, user_id: str) -> Outcome:
    return Outcome(status="completed", retry_count=request.retry_count, last_error_message=request.last_error_message,
                   idp_user_id=user_id, erase_password=True)


# ---- one attempt -----------------------------------------------------------------------------

def _decrypt(value: str) -> str:
    return encryption.keyring().decrypt(value)


def scrub(message: str, secret: str | None) -> str:
    """``message`` without ``secret`` in it (providers may echo what they were sent)."""
    if secret:
        message = message.replace(secret, "[REDACTED]")
    return message[:2000]


def attempt(request: AccountRequest, provider: IdentityProvider, config: ProviderSettings, *,
            decrypt: Callable[[str], str] = _decrypt) -> Outcome:
    """Create (or find) the request's user and grant its roles; the outcome to record."""
    stored = request.encrypted_password
    if stored is not None and not encryption.is_encrypted(stored):
        return after_permanent_failure(request, NOT_ENCRYPTED)
    password = None
    if stored is not None:
        try:
            password = decrypt(stored)
        except encryption.EncryptionError as exc:
            return after_transient_failure(request, f"cannot decrypt the stored password: {exc}")
    try:
        user_id = _create_or_find(request, provider, config, password)
        _grant(request, provider, config, user_id)
    except PermanentProviderError as exc:
        return after_permanent_failure(request, scrub(str(exc), password))
    except RetryableProviderError as exc:
        return after_transient_failure(request, scrub(str(exc), password), exc.retry_after)
    except Exception as exc:  # a bug or an unexpected answer: retried on the schedule, never lost
        message = scrub(f"unexpected {type(exc).__name__}: {exc}", password)
        log.error("managed_account_attempt_crashed", request_id=request.id, error=message)
        return after_transient_failure(request, message)
    return after_success(request, user_id)


def _create_or_find(request: AccountRequest, provider: IdentityProvider, config: ProviderSettings,
                    password: str | None) -> str:
    user_id = derived_user_id(config.user_id_prefix, request.id)
    user = HumanUser(user_id=user_id, organization_id=config.organization_id, username=request.username,
                     given_name=request.given_name, family_name=request.family_name, email=request.email,
                     password=password, password_change_required=config.password_change_required)
    try:
        return provider.create_human_user(user)
    except AlreadyExists as conflict:
        existing = provider.get_user(user_id)
        if existing is None:
            raise PermanentProviderError(
                f"{conflict} — and no user with our id {user_id} exists: the username or e-mail is taken "
                "by another account", status=conflict.status) from None
        if existing.organization_id != config.organization_id or \
                existing.username.casefold() != request.username.casefold():
            raise PermanentProviderError(
                f"user id {user_id} already exists at the identity provider for another account "
                f"(organization {existing.organization_id}, username {existing.username!r}); not linked. "
                "Is ZITADEL_USER_ID_PREFIX shared with another deployment?", status=conflict.status) from None
        log.info("managed_account_linked", request_id=request.id, idp_user_id=existing.user_id)
        return existing.user_id


def _grant(request: AccountRequest, provider: IdentityProvider, config: ProviderSettings, user_id: str) -> None:
    if not config.project_id:
        return
    role_keys = config.role_keys or (request.role,)
    try:
        provider.grant_roles(user_id, config.organization_id, config.project_id, tuple(role_keys))
    except AlreadyExists:
        pass  # granted by an earlier try: the grant is idempotent


# ---- the sweep -------------------------------------------------------------------------------

def admin_recipient(created_by: str) -> notifications.Recipient:
    """Who ``created_by`` names: an e-mail address as it is, anything else a user (issue 15)."""
    return (notifications.Recipient.address(created_by) if _EMAIL.match(created_by)
            else notifications.Recipient.user(created_by))


def finish(request: AccountRequest, outcome: Outcome) -> bool:
    """Record an attempt's outcome and, in the same transaction, the admin's notification
    through the outbox (once per request and kind: the dedupe key). False when another sweep
    took the request back meanwhile (nothing is written then)."""
    with transaction():
        if not account_rows.finish(request, outcome):
            return False
        if outcome.notify is not None:
            recipient, kind, message = outcome.notify
            notifications.notify(
                admin_recipient(recipient), kind=f"managed_account.{kind}",
                dedupe_key=f"managed_account:{request.id}:{kind}",
                subject=f"Managed account {request.username!r} could not be created",
                text=message, html=f"<p>{html.escape(message)}</p>")
    return True


def release_stuck(processing_timeout: float, *, limit: int = 100) -> int:
    """Requests processing for longer than ``processing_timeout`` (their worker died mid-call)
    count as a transient failure: back to pending on the schedule, or failed when out of retries."""
    released = 0
    for request in account_rows.stuck(processing_timeout, limit=limit):
        outcome = after_transient_failure(
            request, f"processing took longer than {processing_timeout:g} s (worker lost?)")
        if finish(request, outcome):
            released += 1
            log.warning("managed_account_processing_timed_out", request_id=request.id, status=outcome.status)
    return released


def sweep(provider: IdentityProvider, config: ProviderSettings, *, processing_timeout: float,
          limit: int = 500, time_budget: float | None = None, decrypt: Callable[[str], str] = _decrypt,
          monotonic: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """Release stuck requests, then claim due ones one at a time (each claim committed before the
    provider is called) until none is due, ``limit`` were handled or ``time_budget`` seconds
    passed. Returns counts by outcome."""
    counts = {"released": release_stuck(processing_timeout), "completed": 0, "retry_scheduled": 0,
              "failed": 0, "superseded": 0}
    deadline = None if time_budget is None else monotonic() + time_budget
    for _ in range(limit):
        if deadline is not None and monotonic() >= deadline:
            break
        request = account_rows.claim_next()
        if request is None:
            break
        outcome = attempt(request, provider, config, decrypt=decrypt)
        if not finish(request, outcome):
            counts["superseded"] += 1
            log.warning("managed_account_claim_lost", request_id=request.id)
            continue
        _log_outcome(request, outcome)
        counts["completed" if outcome.status == "completed" else
               "retry_scheduled" if outcome.status == "pending" else "failed"] += 1
    if any(counts.values()):
        log.info("managed_account_sweep_finished", **counts)
    return counts


def _log_outcome(request: AccountRequest, outcome: Outcome) -> None:
    if outcome.status == "completed":
        log.info("managed_account_created", request_id=request.id, idp_user_id=outcome.idp_user_id,
                 retries=outcome.retry_count)
    elif outcome.status == "pending":
        log.warning("managed_account_retry_scheduled", request_id=request.id, retry_count=outcome.retry_count,
                    retry_in_s=outcome.retry_delay, error=outcome.last_error_message)
    else:
        log.error("managed_account_failed", request_id=request.id, retry_count=outcome.retry_count,
                  error=outcome.last_error_message, notified=request.created_by)


def refuse_unconfigured(missing: list[str]) -> dict[str, int]:
    """The sweep without a configured provider: nothing to do unless requests are due, which
    is an error an operator must see (the job fails with the variables to set)."""
    due = account_rows.count_due()
    if due:
        raise AccountsNotConfigured(f"{due} managed-account request(s) are due but {', '.join(missing)} "
                                    f"{'is' if len(missing) == 1 else 'are'} not set")
    return {"released": 0, "completed": 0, "retry_scheduled": 0, "failed": 0, "superseded": 0}
