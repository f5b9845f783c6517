"""OpenID Federation actors: thin transport over domain.federation (and its rotation).

``federation.generate_files`` retries by message (5 min, 15 min, 1 h, then every 3 h; 6
attempts): it is a regeneration that either works now or later, and the documents it publishes
last 72 h, so a few failed hours cost nothing a person must act on. A failed optional file write
fails it after the cache was refreshed. Not configured: dead at once, naming the settings.

Schedules (declared with the scheduler): federation.generate_files daily at 02:00 UTC,
federation.refresh_cache hourly, federation.advance_rotations every 5 minutes.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.files import job_files
from actors.outbound import Outbound
from domain import federation, federation_rotation, federation_verify
from domain.outcomes import JobOutcome, PermanentFailure
from storage import federation as federation_rows
from storage import settings as settings_module
from storage.schedules import schedule


def fetch(url: str, *, guarded: bool = True) -> federation_verify.Fetched:
    """The verification's HTTP port: any status is an answer; network trouble is an outcome.
    ``guarded=False`` only for the operator's own `federation verify`, whose URLs come from its
    flags and the settings (the web process is often on loopback)."""
    http = Outbound() if guarded else Outbound(guard=None)
    response = http.get(url, success=lambda status: True)
    return federation_verify.Fetched(response.status_code, response.headers.get("Content-Type", ""), response.content)


def superior_kids(current: settings_module.FederationSettings):
    now = lambda: int(federation_rows.database_now().timestamp())  # noqa: E731
    return lambda: federation_verify.superior_kids(fetch, current.trust_anchor_url, current.entity_id, now())


# The scheduled jobs' result on a deployment that does not publish: a dead job every hour there
# would only be noise (half a configuration still fails, naming what is missing).
NOT_IN_USE = {"skipped": "federation not in use: no LAMPLIGHTER_FEDERATION_* setting names this entity"}


def configured(current: settings_module.FederationSettings) -> settings_module.FederationSettings:
    try:
        federation.require_configured(current)
    except federation.FederationNotConfigured as exc:
        raise PermanentFailure(str(exc)) from None
    return current


@dramatiq.actor(actor_name="federation.generate_files", queue_name="federation", priority=30,
                time_limit=5 * 60_000, max_retries=5, retry_schedule=[300, 900, 3600, 10800],
                periodic=cron("0 2 * * *"))
def generate_files() -> dict:
    current = settings_module.get().federation
    if not current.in_use():
        return NOT_IN_USE
    current = configured(current)
    try:
        return federation.generate_files(current, job_files)
    except federation.FilesNotWritten as exc:
        if isinstance(exc.cause, JobOutcome):
            raise type(exc.cause)(str(exc)) from None
        raise


@dramatiq.actor(actor_name="federation.refresh_cache", queue_name="federation", priority=30,
                time_limit=2 * 60_000, max_retries=3, periodic=cron("0 * * * *"))
def refresh_cache() -> dict:
    current = settings_module.get().federation
    if not current.in_use():
        return NOT_IN_USE
    return federation.refresh(configured(current))


# No retries: the step job runs every 5 minutes and each rotation keeps its state in its row.
@dramatiq.actor(actor_name="federation.advance_rotations", queue_name="federation", priority=30,
                time_limit=5 * 60_000, max_retries=0,
                periodic=schedule("federation.advance_rotations", cron("*/5 * * * *"), misfire="skip",
                                  overlap="skip"))
def advance_rotations() -> dict:
    current = settings_module.get().federation
    if current.missing() and not federation_rows.running_rotations():
        # Every 5 minutes on deployments that do not publish: nothing to advance is no failure.
        return {"promoted": 0, "removed": 0, "waiting": 0}
    configured(current)
    return federation_rotation.advance(current, publish=lambda: federation.publish(current),
                                       superior_kids=superior_kids(current))
