"""Expiry thresholds, once: "tell them 30, 7 and 1 days before ``expires_at``, once per item per
threshold", for credentials, licenses, integrations and whatever else expires.

The rule is a pure function (:func:`due_threshold`); the "once" is the outbox's dedupe key
(:func:`dedupe_key`), not anything remembered in memory or in the item's row: a daily job may
run twice, run late, or run on two workers, and each threshold still notifies once. The key
includes the expiry time itself, so an item renewed to a new ``expires_at`` is told again about
its new expiry.

A run that comes late tells only the nearest threshold: an item first seen 5 days before it
expires gets the 7-day notice, not the 30-day one as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from domain import notifications
from domain.notifications import Recipient

THRESHOLDS_DAYS = (30, 7, 1)


def due_threshold(now: datetime, expires_at: datetime, thresholds: tuple[int, ...] = THRESHOLDS_DAYS) -> int | None:
    """The threshold (in days) whose notice is due at ``now``: the smallest one that ``expires_at``
    is within. None when it is further off than the largest, or already past."""
    left = expires_at - now
    if left <= timedelta(0):
        return None
    within = [days for days in thresholds if left <= timedelta(days=days)]
    return min(within) if within else None


def dedupe_key(kind: str, item_id: str | int, expires_at: datetime, threshold_days: int) -> str:
    stamp = expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"expiry:{kind}:{item_id}:{stamp}:{threshold_days}d"


@dataclass(frozen=True)
class Expiring:
    """Something that expires, and who is told. ``label`` names it for a person ("API token
    'deploy-bot'")."""

    kind: str  # api_token, client_secret, license, integration, ...
    item_id: str | int
    expires_at: datetime
    recipient: Recipient
    label: str
    tenant_id: str | None = None
    # Set when one item is told to several recipients, each once: it ends the dedupe key
    # ("owner", "admins").
    audience: str = ""


def notify_if_due(item: Expiring, *, now: datetime, thresholds: tuple[int, ...] = THRESHOLDS_DAYS) -> int | None:
    """Write the item's notice for the threshold due at ``now`` (once: the dedupe key); the new
    notification's id, or None when no threshold is due or this one was written before."""
    days = due_threshold(now, item.expires_at, thresholds)
    if days is None:
        return None
    when = item.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subject = f"{item.label} expires {'within a day' if days == 1 else f'within {days} days'}"
    text = (f"{item.label} expires at {when}. Renew or replace it before then; this is the {days}-day notice "
            f"(notices go out {', '.join(str(d) for d in sorted(thresholds, reverse=True))} days before).")
    return notifications.notify(item.recipient, kind=f"expiry.{item.kind}",
                                dedupe_key=dedupe_key(item.kind, item.item_id, item.expires_at, days)
                                + (f":{item.audience}" if item.audience else ""),
                                subject=subject, text=text, tenant_id=item.tenant_id)


def notify_expiring(items, *, now: datetime, thresholds: tuple[int, ...] = THRESHOLDS_DAYS) -> dict[str, int]:
    """:func:`notify_if_due` for each of ``items``; counts for the job's history row."""
    counts = {"checked": 0, "notified": 0}
    for item in items:
        counts["checked"] += 1
        if notify_if_due(item, now=now, thresholds=thresholds) is not None:
            counts["notified"] += 1
    return counts
