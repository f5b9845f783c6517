"""The notification outbox's rows (queries in sql/notifications.sql; rules in
domain/notifications.py).

Writing a row also queues its ``notifications.deliver`` job, in the same statement and so in the
caller's transaction (peewee's, joined by :func:`storage.queries.run`): the job queue lives in this
database, and ``lamplighter.enqueue()`` is its public SQL entry. Doing it here keeps the domain
free of dramatiq and storage free of the actors package, and a rolled-back change leaves neither a
row nor a job behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage import connection
from storage.queries import rows, runner

execute = runner("notifications")
STATUSES = ("pending", "delivered", "failed")
CHANNELS = ("email", "webhook")
RECIPIENT_KINDS = ("user", "role", "tenant_owner", "address")
WEBHOOK_FORMATS = ("json", "slack")


@dataclass(frozen=True)
class Notification:
    id: int
    dedupe_key: str
    kind: str
    channel: str
    recipient_kind: str
    recipient: str
    webhook_format: str | None
    subject: str
    body_text: str
    body_html: str | None
    tenant_id: str | None
    status: str
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    job_id: str | None


def _notification(row: dict) -> Notification:
    return Notification(**{**row, "job_id": None if row["job_id"] is None else str(row["job_id"])})


def insert(*, dedupe_key: str, kind: str, channel: str, recipient_kind: str, recipient: str,
           webhook_format: str | None, subject: str, body_text: str, body_html: str | None,
           tenant_id: str | None) -> int | None:
    """Write the row and queue its delivery, in the caller's transaction if one is open. Returns
    the new row's id, or None when ``dedupe_key`` was written before (nothing changes then)."""
    with connection.init_database().atomic():
        found = execute("notification_insert", {
            "dedupe_key": dedupe_key, "kind": kind, "channel": channel, "recipient_kind": recipient_kind,
            "recipient": recipient, "webhook_format": webhook_format, "subject": subject, "body_text": body_text,
            "body_html": body_html, "tenant_id": tenant_id}).fetchone()
        if found is None:
            return None
        notification_id, job_id = found
        execute("notification_set_job", {"id": notification_id, "job_id": job_id})
    return notification_id


def get(notification_id: int) -> Notification | None:
    found = rows(execute("notification_get", {"id": notification_id}))
    return _notification(found[0]) if found else None


def get_by_dedupe_key(dedupe_key: str) -> Notification | None:
    found = rows(execute("notification_get_by_dedupe_key", {"dedupe_key": dedupe_key}))
    return _notification(found[0]) if found else None


def begin_attempt(notification_id: int) -> Notification | None:
    """Count an attempt on a pending row (committed unless the caller holds a transaction);
    None when the row is delivered, failed or gone."""
    found = rows(execute("notification_begin_attempt", {"id": notification_id}))
    return _notification(found[0]) if found else None


def record_delivered(notification_id: int, *, note: str | None = None) -> bool:
    return execute("notification_record_delivered", {"id": notification_id, "note": note}).fetchone() is not None


def record_failure(notification_id: int, error: str, *, final: bool) -> bool:
    return execute("notification_record_failure",
                   {"id": notification_id, "error": error, "final": final}).fetchone() is not None


def list_notifications(*, status: str | None = None, limit: int = 50) -> list[Notification]:
    return [_notification(r) for r in rows(execute("notification_list", {"status": status, "limit": limit}))]


def retry(notification_id: int) -> str | None:
    """A failed row pending again and queued; its job id, or None when the row is not failed."""
    with connection.init_database().atomic():
        found = execute("notification_retry", {"id": notification_id}).fetchone()
        if found is None:
            return None
        execute("notification_set_job", {"id": notification_id, "job_id": found[1]})
    return str(found[1])


def requeue_pending(*, min_age: float, limit: int) -> tuple[int, int]:
    """Queue delivery again for pending rows older than ``min_age`` seconds whose job is gone;
    returns (pending rows checked, rows given a new job)."""
    found = execute("notification_requeue_pending", {"min_age": min_age, "limit": limit}).fetchall()
    return len(found), sum(1 for _, requeued in found if requeued)


def addresses(recipient_kind: str, recipient: str, tenant_id: str | None = None) -> list[str]:
    """The e-mail addresses a recipient stands for now: an address is itself; a user (id,
    ``user:<id>`` or e-mail) its address; a role every enabled user with it in ``tenant_id``
    (None: platform users); a tenant's owner its enabled superadmins. Disabled users get nothing."""
    if recipient_kind == "address":
        return [recipient]
    if recipient_kind == "user":
        found = execute("notification_recipient_user", {"ref": recipient})
    elif recipient_kind == "role":
        found = execute("notification_recipient_role", {"role": recipient, "tenant_id": tenant_id})
    elif recipient_kind == "tenant_owner":
        found = execute("notification_recipient_tenant_owner", {"tenant": recipient})
    else:
        raise ValueError(f"unknown recipient kind {recipient_kind!r}")
    return [email for (email,) in found.fetchall()]
