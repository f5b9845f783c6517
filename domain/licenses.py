"""Licenses and subscriptions: the daily check (README "Operations jobs").

Active licenses past their expiry become expired (the tenant's owners are told once); the
others get the 30, 7 and 1-day notices through domain/expiry.py (once each, by the outbox's
dedupe key) and their seats are counted: more enabled users than seats opens a
``license.seats`` alert for the tenant, which resolves once the count is back within the seats.
"""
from __future__ import annotations

import structlog

from domain import alerts, expiry, notifications
from domain.notifications import Recipient
from storage import licenses as license_rows
from storage.queries import transaction

log = structlog.get_logger("lamplighter.licenses")


def check(*, audience: alerts.Audience | None = None) -> dict:
    """Expire, notify and count seats; counts for the job's history row. "Now" is the database's
    clock (``lamplighter.now()``), the one the expiry itself is judged by."""
    expired, expired_tenants = 0, set()
    with transaction():  # the status change and its notice commit together
        for row in license_rows.expire_due():
            expired += 1
            expired_tenants.add(row["tenant_id"])
            notifications.notify(Recipient.tenant_owner(row["tenant_id"]), kind="license.expired",
                                 dedupe_key=expiry.dedupe_key("license", row["id"], row["expires_at"], 0),
                                 subject=f"Your {row['plan']} license has expired",
                                 text=f"The {row['plan']} license expired at {row['expires_at']:%Y-%m-%d %H:%M UTC}.",
                                 tenant_id=row["tenant_id"])
    counted = license_rows.count_seats()
    notices = {"checked": 0, "notified": 0}
    if counted:
        notices = expiry.notify_expiring(
            [expiry.Expiring(kind="license", item_id=c.id, expires_at=c.expires_at,
                             recipient=Recipient.tenant_owner(c.tenant_id),
                             label=f"The {c.plan} license of {c.tenant_name}", tenant_id=c.tenant_id)
             for c in counted], now=counted[0].now)
    over = 0
    over_tenants = {c.tenant_id for c in counted if c.seats_used > c.seats}
    for c in counted:
        subject = ("tenant", c.tenant_id)
        if c.tenant_id in over_tenants:
            if c.seats_used > c.seats:
                over += 1
                alerts.open_or_touch("license.seats", subject, {"license_id": c.id, "plan": c.plan,
                                                                 "seats": c.seats, "seats_used": c.seats_used},
                                     audience=audience)
        else:
            alerts.resolve("license.seats", subject, audience=audience)
    for tenant_id in expired_tenants - {c.tenant_id for c in counted}:  # no active license left to count
        alerts.resolve("license.seats", ("tenant", tenant_id), audience=audience)
    log.info("licenses_checked", expired=expired, notified=notices["notified"], over_seats=over)
    return {"expired": expired, "active": len(counted), "notified": notices["notified"], "over_seats": over}
