"""Managed-account actors: thin transport over domain.accounts, with Zitadel as the provider.

Schedule (declared with the scheduler): accounts.retry_managed_account_creations every minute.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.zitadel import ZitadelClient
from domain import accounts
from storage import settings as settings_module
from storage.schedules import schedule

# A sweep stops claiming after this, well inside its 5-minute time limit (one request makes at most
# three calls of ZITADEL_TIMEOUT each); the next minute's sweep carries on.
SWEEP_TIME_BUDGET = 240.0


def provider_settings(current: settings_module.Settings) -> accounts.ProviderSettings:
    return accounts.ProviderSettings(
        organization_id=current.zitadel_org_id, project_id=current.zitadel_project_id,
        role_keys=current.zitadel_role_keys, password_change_required=current.zitadel_password_change_required,
        user_id_prefix=current.zitadel_user_id_prefix)


# No retries: the sweep runs every minute, and each request keeps its own schedule in its row.
# A sweep still running when the next minute comes is not doubled (overlap skip), and minutes
# missed while the scheduler was down need no catch-up: the next sweep takes every due request.
@dramatiq.actor(actor_name="accounts.retry_managed_account_creations", queue_name="accounts", priority=10,
                time_limit=5 * 60_000, max_retries=0,
                periodic=schedule("accounts.retry_managed_account_creations", cron("* * * * *"),
                                  misfire="skip", overlap="skip"))
def retry_managed_account_creations(limit: int = 500) -> dict:
    current = settings_module.get()
    missing = [name for name, value in (("ZITADEL_URL", current.zitadel_url), ("ZITADEL_PAT", current.zitadel_pat),
                                        ("ZITADEL_ORG_ID", current.zitadel_org_id)) if not value]
    if missing:
        return accounts.refuse_unconfigured(missing)
    with ZitadelClient(current.zitadel_url, current.zitadel_pat, timeout=current.zitadel_timeout) as client:
        return accounts.sweep(client, provider_settings(current),
                              processing_timeout=current.account_processing_timeout, limit=limit,
                              time_budget=SWEEP_TIME_BUDGET)
