"""Cloud-integration actors: thin transport over domain.integrations and domain.integration_files,
with actors/cloud_providers.py as the provider.

Retry styles, chosen on purpose:

* ``integrations.refresh_tokens`` retries by message (a call that works now or later): network
  errors, timeouts, 429 (its Retry-After) and 5xx back off exponentially from 10 s to 10 min,
  11 attempts. One waits per integration (unique key ``refresh-<id>``, ``replace``); refreshes
  of one integration never run at once (concurrency key ``integration-<id>``, limit 1).
* ``integrations.check_health`` never retries: an error is recorded and the next sweep looks again.
* ``integrations.index_files`` handles the provider's trouble itself (it pauses the pass and
  queues its continuation); its 3 retries are for the database.

Schedules (declared with the scheduler): integrations.sweep_health every 4 hours,
integrations.sweep_index every 6 hours, both UTC.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.cloud_providers import OAuthProvider
from actors.outbound import Outbound
from domain import integration_files, integrations
from domain.outcomes import PermanentFailure
from storage import integrations as integration_rows
from storage import settings as settings_module
from storage.schedules import schedule

URGENT_PRIORITY = 0  # lower runs first: an urgent refresh jumps the integrations queue


@dramatiq.actor(actor_name="integrations.refresh_tokens", queue_name="integrations", priority=10,
                time_limit=2 * 60_000, max_retries=10, min_backoff=10_000, max_backoff=600_000)
def refresh_tokens(integration_id: int, force: bool = False) -> dict:
    return integrations.refresh(integration_id, provider_for=provider_for(), jobs=JOBS,
                                settings=settings_module.get().integrations, force=force)


@dramatiq.actor(actor_name="integrations.check_health", queue_name="integrations", priority=30,
                time_limit=60_000, max_retries=0)
def check_health(integration_id: int) -> dict:
    return integrations.check_health(integration_id, provider_for=provider_for(), jobs=JOBS)


@dramatiq.actor(actor_name="integrations.index_files", queue_name="integrations", priority=40,
                time_limit=10 * 60_000, max_retries=3)
def index_files(integration_id: int) -> dict:
    return integration_files.index_files(integration_id, provider_for=provider_for(), jobs=JOBS,
                                         settings=settings_module.get().integrations)


@dramatiq.actor(actor_name="integrations.sweep_health", queue_name="integrations", priority=20,
                time_limit=10 * 60_000, max_retries=0,
                periodic=schedule("integrations.sweep_health", cron("0 */4 * * *"), misfire="skip", overlap="skip"))
def sweep_health(batch_size: int = 1000) -> dict:
    return integrations.sweep(JOBS.check_health_many, batch_size=batch_size)


@dramatiq.actor(actor_name="integrations.sweep_index", queue_name="integrations", priority=20,
                time_limit=10 * 60_000, max_retries=0,
                periodic=schedule("integrations.sweep_index", cron("30 */6 * * *"), misfire="skip", overlap="skip"))
def sweep_index(batch_size: int = 1000) -> dict:
    return integrations.sweep(JOBS.index_files_many, batch_size=batch_size)


def provider_for():
    """The domain's ProviderFor port: one Outbound for the job, an adapter per provider row."""
    http = Outbound()

    def adapter(provider_id: int) -> OAuthProvider:
        provider = integration_rows.get_provider(provider_id)
        if provider is None:
            raise PermanentFailure(f"cloud provider {provider_id} is gone")
        return OAuthProvider(provider, http)

    return adapter


class IntegrationJobs:
    """The domain's Jobs port. Each integration has at most one refresh and one index run waiting
    (unique keys); sent from inside a running job under its own key, the successor takes it over."""

    def schedule_refresh(self, integration_id: int, delay: float, *, tenant_id: str | None = None,
                         urgent: bool = False) -> str:
        options = {"priority": URGENT_PRIORITY} if urgent else {}
        message = refresh_tokens.send_with_options(
            args=(integration_id,), kwargs={"force": True} if urgent else {}, delay=int(max(delay, 0.0) * 1000),
            unique_key=f"refresh-{integration_id}", unique_on_conflict="replace",
            concurrency_key=f"integration-{integration_id}", concurrency_limit=1, tenant_id=tenant_id, **options)
        return message.message_id

    def index_files(self, integration_id: int, *, tenant_id: str | None = None, delay: float = 0.0) -> str:
        return index_files.send_with_options(args=(integration_id,), delay=int(max(delay, 0.0) * 1000),
                                             unique_key=f"index-{integration_id}", tenant_id=tenant_id).message_id

    def check_health_many(self, integration_ids: list[int]) -> int:
        return len(check_health.broker.enqueue_many(
            [check_health.message_with_options(args=(i,), unique_key=f"health-{i}") for i in integration_ids]))

    def index_files_many(self, integration_ids: list[int]) -> int:
        return len(index_files.broker.enqueue_many(
            [index_files.message_with_options(args=(i,), unique_key=f"index-{i}") for i in integration_ids]))


JOBS = IntegrationJobs()
