"""Notification actors: thin transport over domain.notifications (the outbox).

``notifications.deliver`` uses message retries, on purpose: a delivery is a call to a mail server
or a webhook that either works now or later, and nobody acts on each attempt; the row records
them (attempts, last_error) for `lamplighter notifications`. Its schedule: 30 s, 2 min, 10 min,
1 h, then hourly; 7 attempts in all, after which the row is ``failed`` (retried by hand with
`lamplighter notifications retry ID`).

Schedules (declared with the scheduler), UTC: notifications.requeue_undelivered every 5 minutes,
notifications.expiring_credentials daily at 09:00 (domain/credentials.py),
notifications.security_alerts every 15 minutes (domain/security_alerts.py).
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.notification_channels import Channels
from domain import credentials, notifications, security_alerts
from storage import settings as settings_module
from storage.schedules import schedule

DELIVERY_RETRIES = 6  # also in migration 0010's lamplighter.actors row, refreshed by every release


@dramatiq.actor(actor_name="notifications.deliver", queue_name="notifications", priority=20,
                time_limit=2 * 60_000, max_retries=DELIVERY_RETRIES, retry_schedule=[30, 120, 600, 3600])
def deliver(notification_id: int) -> dict:
    channels = Channels(settings_module.get().smtp)
    return notifications.deliver(notification_id, channels, max_attempts=DELIVERY_RETRIES + 1)


# The safety net under deliver: a pending row whose job is gone (a job lost with its worker and
# out of attempts before it could record, a pruned or cancelled job) gets a new one. Rows whose
# job still waits or runs are left alone by the job's unique key.
@dramatiq.actor(actor_name="notifications.requeue_undelivered", queue_name="notifications", priority=50,
                time_limit=5 * 60_000, max_retries=0,
                periodic=schedule("notifications.requeue_undelivered", cron("*/5 * * * *"),
                                  misfire="skip", overlap="skip"))
def requeue_undelivered(limit: int = 1000) -> dict:
    return notifications.requeue_undelivered(limit=limit)


@dramatiq.actor(actor_name="notifications.expiring_credentials", queue_name="notifications", priority=30,
                time_limit=10 * 60_000, max_retries=3, periodic=cron("0 9 * * *"))
def expiring_credentials() -> dict:
    """Notices are written once per credential, threshold and recipient (the outbox's dedupe key)."""
    return credentials.notify_expiring()  # "now" is the database's, as the credentials view reads it


@dramatiq.actor(actor_name="notifications.security_alerts", queue_name="notifications", priority=30,
                time_limit=10 * 60_000, max_retries=3,
                periodic=schedule("notifications.security_alerts", cron("*/15 * * * *"), overlap="skip"))
def security_alerts_scan(settle_seconds: float = 5.0) -> dict:
    return security_alerts.scan(settle_seconds=settle_seconds)
