"""The notification outbox: every domain tells people things through :func:`notify`, and one
actor (``notifications.deliver``) sends them (README "Notifications, alerts and files").

:func:`notify` writes a row in the caller's transaction, and the same statement queues its
delivery job (storage/notifications.py says how): the change and the message about it commit
together, or neither does. The dedupe key is unique in the table, so "once per incident" or
"once per threshold" is the database's guarantee: a second :func:`notify` with the same key, from
any process, at any time, changes nothing and returns None.

:func:`deliver` sends one row through the :class:`Channels` port (the SMTP and webhook adapters
live in actors/notification_channels.py) and records each attempt in the row: ``attempts``,
``last_error`` (scrubbed of the channels' secrets), then ``delivered`` or, out of attempts or on
a permanent error, ``failed``. Retries are the delivering job's: this module raises the outcome
vocabulary (domain.outcomes) and the actor's ``retry_schedule`` times the next attempt.

Recipients: an ``address`` is an e-mail address (or, for webhooks, the URL) as it is; a
``user`` (id, ``user:<id>`` or e-mail), a ``role`` (every enabled user with it, of the
notification's tenant, or platform users for a notification without one) and a
``tenant_owner`` (the tenant's enabled superadmins) are resolved at delivery, through the
``resolve`` port (storage.notifications.addresses over issue 15's users), so a message reaches
whoever holds the role when it is sent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol

import structlog

from domain import audit
from domain.outcomes import PermanentFailure, RetryLater
from storage import notifications as notification_rows
from storage.notifications import CHANNELS, RECIPIENT_KINDS, WEBHOOK_FORMATS, Notification
from storage.queries import transaction

log = structlog.get_logger("lamplighter.notifications")

ERROR_LIMIT = 1000  # characters of last_error kept
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_WEBHOOK = re.compile(r"^https?://[^/\s]+")


class NotificationError(Exception):
    """Base of the notification domain's errors."""


class InvalidNotification(NotificationError):
    """A notification that cannot be written (missing or malformed field)."""


@dataclass(frozen=True)
class Recipient:
    """Who a notification is for: ``kind`` is user, role, tenant_owner or address."""

    kind: str
    value: str

    @classmethod
    def user(cls, user_id: str | int) -> "Recipient":
        return cls("user", str(user_id))

    @classmethod
    def role(cls, role: str) -> "Recipient":
        return cls("role", role)

    @classmethod
    def tenant_owner(cls, tenant_id: str) -> "Recipient":
        return cls("tenant_owner", tenant_id)

    @classmethod
    def address(cls, address: str) -> "Recipient":
        return cls("address", address)

    @classmethod
    def parse(cls, spec: str) -> "Recipient":
        """``role:superadmin``, ``user:42``, ``address:ops@example.org``."""
        kind, _, value = spec.partition(":")
        return cls(kind.strip(), value.strip())

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


# ---- writing ---------------------------------------------------------------------------------

def notify(recipient: Recipient, *, subject: str, text: str, dedupe_key: str, kind: str,
           html: str | None = None, channel: str = "email", webhook_format: str = "json",
           tenant_id: str | None = None) -> int | None:
    """Write a notification and queue its delivery, in the caller's transaction if one is open.
    Returns its id, or None when ``dedupe_key`` was written before (then nothing changes).

    ``kind`` names what it is about (``alert.opened``, ``expiry.api_token``); ``channel`` is
    ``email`` or ``webhook`` (recipient: an address, the URL; ``webhook_format`` json or slack)."""
    if channel not in CHANNELS:
        raise InvalidNotification(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if recipient.kind not in RECIPIENT_KINDS or not recipient.value.strip():
        raise InvalidNotification(f"recipient {recipient}: kind must be one of {', '.join(RECIPIENT_KINDS)}, "
                                  "with a value")
    if channel == "webhook":
        if recipient.kind != "address" or not _WEBHOOK.match(recipient.value):
            raise InvalidNotification("a webhook's recipient is its http(s):// URL (Recipient.address(url))")
        if webhook_format not in WEBHOOK_FORMATS:
            raise InvalidNotification(f"webhook_format must be one of {', '.join(WEBHOOK_FORMATS)}")
    elif recipient.kind == "address" and not _EMAIL.match(recipient.value):
        raise InvalidNotification(f"{recipient.value!r} is not an e-mail address")
    for name, value in (("subject", subject), ("text", text), ("dedupe_key", dedupe_key), ("kind", kind)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidNotification(f"{name} is required")
    if "\n" in subject or "\r" in subject:
        raise InvalidNotification("subject must be one line")
    notification_id = notification_rows.insert(
        dedupe_key=dedupe_key, kind=kind, channel=channel, recipient_kind=recipient.kind,
        recipient=recipient.value, webhook_format=webhook_format if channel == "webhook" else None,
        subject=subject, body_text=text, body_html=html, tenant_id=tenant_id)
    if notification_id is not None:
        log.info("notification_queued", notification_id=notification_id, kind=kind, channel=channel,
                 recipient_kind=recipient.kind, tenant_id=tenant_id)
    return notification_id


# ---- delivering ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Email:
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None
    reference: str  # the notification's dedupe key, for the Message-ID and threading


class Channels(Protocol):
    """What delivery needs from the outside world. Both methods return on success (``send_email``
    optionally a note, e.g. recipients the server refused while it took the others) and raise
    :class:`RetryLater` (try again) or :class:`PermanentFailure` (retrying will not help)."""

    secrets: tuple[str, ...]  # never written to last_error (an SMTP password, say)

    def send_email(self, email: Email) -> str | None: ...

    def post_webhook(self, url: str, payload: dict) -> None: ...


Resolve = Callable[[str, str, "str | None"], list[str]]  # (recipient kind, recipient, tenant) -> addresses


def webhook_payload(row: Notification) -> dict:
    """The JSON a webhook receives: the notification as an object, or Slack's ``{"text": ...}``."""
    if row.webhook_format == "slack":
        return {"text": f"*{row.subject}*\n{row.body_text}"}
    return {"id": row.id, "kind": row.kind, "subject": row.subject, "text": row.body_text, "html": row.body_html,
            "tenant_id": row.tenant_id, "dedupe_key": row.dedupe_key, "created_at": row.created_at.isoformat()}


def scrub(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[REDACTED]")
    return message[:ERROR_LIMIT]


def deliver(notification_id: int, channels: Channels, *, max_attempts: int,
            resolve: Resolve = notification_rows.addresses) -> dict:
    """One delivery attempt of a pending notification, recorded in its row. Returns what
    happened (for the job's history); raises RetryLater while attempts remain, PermanentFailure
    once the row has failed. A row already delivered or failed is left alone."""
    row = notification_rows.begin_attempt(notification_id)
    if row is None:
        current = notification_rows.get(notification_id)
        return {"notification_id": notification_id, "status": current.status if current else "missing"}
    note = None
    try:
        if row.channel == "webhook":
            channels.post_webhook(row.recipient, webhook_payload(row))
            to: tuple[str, ...] = ()
        else:
            to = _addresses(row, resolve)
            note = channels.send_email(Email(to=to, subject=row.subject, text=row.body_text, html=row.body_html,
                                      reference=row.dedupe_key))
    except PermanentFailure as exc:
        _record_failure(row, scrub(str(exc), channels.secrets), final=True)
        raise PermanentFailure(scrub(str(exc), channels.secrets)) from None
    except Exception as exc:  # RetryLater, or anything unexpected: retried while attempts remain
        message = scrub(str(exc) if isinstance(exc, RetryLater) else f"unexpected {type(exc).__name__}: {exc}",
                        channels.secrets)
        final = row.attempts >= max_attempts
        _record_failure(row, message, final=final)
        if final:
            raise PermanentFailure(f"gave up after {row.attempts} attempts; last error: {message}") from None
        raise RetryLater(message, delay=getattr(exc, "delay", None)) from None
    notification_rows.record_delivered(row.id, note=None if note is None else scrub(note, channels.secrets))
    log.info("notification_delivered", notification_id=row.id, kind=row.kind, channel=row.channel,
             attempt=row.attempts, recipients=len(to) or 1, tenant_id=row.tenant_id)
    return {"notification_id": row.id, "status": "delivered", "attempt": row.attempts}


def _addresses(row: Notification, resolve: Resolve) -> tuple[str, ...]:
    addresses = tuple(dict.fromkeys(a for a in resolve(row.recipient_kind, row.recipient, row.tenant_id) if a))
    if not addresses:
        whose = f" in tenant {row.tenant_id}" if row.recipient_kind == "role" and row.tenant_id else ""
        raise PermanentFailure(f"no e-mail address for {row.recipient_kind} {row.recipient!r}{whose} "
                               "(no such enabled user, or no enabled user holds it)")
    return addresses


def _record_failure(row: Notification, message: str, *, final: bool) -> None:
    notification_rows.record_failure(row.id, message, final=final)
    (log.error if final else log.warning)(
        "notification_failed" if final else "notification_attempt_failed", notification_id=row.id, kind=row.kind,
        channel=row.channel, attempt=row.attempts, error=message, tenant_id=row.tenant_id)


# ---- operating ---------------------------------------------------------------------------------

def requeue_undelivered(*, min_age: float = 60.0, limit: int = 1000) -> dict:
    """The safety sweep: pending rows whose delivery job is gone get a new one (the job's unique
    key leaves rows whose job still waits or runs as they are). Nothing is lost to a lost job."""
    checked, requeued = notification_rows.requeue_pending(min_age=min_age, limit=limit)
    if requeued:
        log.warning("notifications_requeued", requeued=requeued, pending=checked)
    return {"pending": checked, "requeued": requeued}


def retry(notification_id: int, *, by: str) -> str | None:
    """A failed notification pending again with a fresh allowance of attempts (audited); its
    job id, or None when it is not failed."""
    with transaction():
        job_id = notification_rows.retry(notification_id)
        if job_id is not None:
            row = notification_rows.get(notification_id)
            audit.record(by, "notification.retried", target_type="notification", target_id=notification_id,
                         tenant_id=row.tenant_id, details={"kind": row.kind, "job_id": job_id})
    if job_id is not None:
        log.info("notification_retried", notification_id=notification_id, by=by, job_id=job_id)
    return job_id
