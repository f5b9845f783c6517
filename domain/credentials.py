"""Expiring credentials (notifications.expiring_credentials, daily): everything in the credentials
view (migration 0009: API tokens today) that expires within 30, 7 or 1 days is told to its owner
and to the superadmins (the tenant's for a tenant's credential, else the platform's), once per
threshold and recipient, through the shared expiry helper (domain/expiry.py) and the outbox.

An owner that is no user (``cli:...``, ``system:...``) is not told; the superadmins still are.
"""
from __future__ import annotations

import re

from domain import expiry
from domain.notifications import Recipient
from storage import credentials as credential_rows
from storage.clock import Clock
from storage.queries import transaction

_USER_OWNER = re.compile(r"^(user:)?\d+$|^[^@\s:]+@[^@\s]+$")
LABELS = {"api_token": "API token"}


def owner_recipient(owner: str) -> Recipient | None:
    """The owner as a recipient, when it names a user (an id, ``user:<id>`` or an address)."""
    return Recipient.user(owner) if _USER_OWNER.match(owner or "") else None


def items(credential) -> list[expiry.Expiring]:
    label = f"{LABELS.get(credential.kind, credential.kind)} {credential.name!r}"
    admins = (Recipient.tenant_owner(credential.tenant_id) if credential.tenant_id
              else Recipient.role("superadmin"))
    found = [expiry.Expiring(kind=credential.kind, item_id=credential.credential_id, expires_at=credential.expires_at,
                             recipient=admins, label=label, tenant_id=credential.tenant_id, audience="admins")]
    owner = owner_recipient(credential.owner)
    if owner is not None:
        found.append(expiry.Expiring(kind=credential.kind, item_id=credential.credential_id,
                                     expires_at=credential.expires_at, recipient=owner, label=label,
                                     tenant_id=credential.tenant_id, audience="owner"))
    return found


def notify_expiring(clock: Clock | None = None, *, limit: int = 10_000) -> dict[str, int]:
    """Write the notices due now (each once); counts for the job's history row. ``clock``: by
    default the database's, the one the credentials view is read with."""
    horizon = max(expiry.THRESHOLDS_DAYS)
    credentials = credential_rows.expiring(days=horizon, limit=limit)
    with transaction():
        now = clock.now() if clock is not None else credential_rows.database_now()
        counts = expiry.notify_expiring([item for c in credentials for item in items(c)], now=now)
    return {"credentials": len(credentials), "notices_checked": counts["checked"], "notified": counts["notified"]}
