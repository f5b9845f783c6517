"""integrations.check_health and the 4-hourly sweep against the local provider: healthy, expired
(urgent refresh), revoked after a failed refresh (the tenant's owners told once), errors recorded
and not retried; the sweep queues one check per active integration, never two."""
from __future__ import annotations

import pytest

import actors
from domain.outcomes import RetryLater
from storage import integrations as rows
from tests.oauth_provider import FIRST_ACCESS, acme, answer, configured, connect, provider  # noqa: F401

check_health = actors.integrations.check_health.fn
refresh_tokens = actors.integrations.refresh_tokens.fn


def refresh_jobs(sql, integration_id: int) -> list[tuple]:
    return sql("SELECT state, priority, message -> 'kwargs', available_at <= lamplighter.now() FROM dramatiq.queue "
               "WHERE unique_key = %s", (f"refresh-{integration_id}",))


def test_a_healthy_integration_is_recorded(acme, provider):
    row = connect(acme)
    assert check_health(row.id) == {"outcome": "healthy"}
    after = rows.get(row.id)
    assert after.last_health_check_at is not None and after.status_message is None and after.status == "active"


def test_an_access_token_the_provider_refuses_gets_an_urgent_refresh(acme, provider, sql):
    row = connect(acme, access="at-unknown-to-the-provider")
    [(_, priority, kwargs, due)] = refresh_jobs(sql, row.id)
    assert (priority, kwargs, due) == (10, {}, False)  # the normal one, 55 minutes out

    assert check_health(row.id) == {"outcome": "expired"}

    [(state, priority, kwargs, due)] = refresh_jobs(sql, row.id)  # the same job, moved: now, urgent
    assert (state, priority, kwargs, due) == ("queued", 0, {"force": True}, True)
    after = rows.get(row.id)
    assert after.status == "active" and "urgent refresh queued" in after.status_message
    assert refresh_tokens(row.id, force=True)["outcome"] == "refreshed"
    assert check_health(row.id) == {"outcome": "healthy"}


def test_a_token_expired_by_the_clock_is_refreshed_without_asking_the_provider(acme, provider, sql, db_clock):
    row = connect(acme)
    db_clock.advance(3601)
    assert check_health(row.id) == {"outcome": "expired"}
    assert [r[:2] for r in refresh_jobs(sql, row.id)] == [("queued", 0)]
    assert provider.token_requests == [] and not provider.userinfo_script


def test_an_expired_integration_without_a_refresh_token_is_expired_and_its_owner_told(acme, provider, sql):
    row = connect(acme, refresh=None, access="at-unknown-to-the-provider")
    assert refresh_jobs(sql, row.id) == []  # nothing to refresh with
    assert check_health(row.id) == {"outcome": "expired"}
    assert rows.get(row.id).status == "expired"
    assert sql("SELECT kind, recipient_kind FROM lamplighter.notifications") == [("integration.expired",
                                                                                  "tenant_owner")]


def test_refused_after_a_failed_refresh_is_revoked_and_the_tenant_owners_are_told_once(acme, provider, sql):
    row = connect(acme)
    provider.token_script.append(answer(503))
    with pytest.raises(RetryLater):
        refresh_tokens(row.id, force=True)
    provider.valid_access.clear()  # the provider now refuses the access token too

    assert check_health(row.id) == {"outcome": "revoked"}
    assert check_health(row.id) == {"outcome": "skipped", "status": "revoked"}

    after = rows.get(row.id)
    assert after.status == "revoked" and after.refresh_token is not None
    assert sql("SELECT recipient_kind, recipient, kind, tenant_id FROM lamplighter.notifications") == [
        ("tenant_owner", "acme", "integration.revoked", "acme")]


@pytest.mark.parametrize("trouble", [answer(500), answer(429, headers={"Retry-After": "600"}), answer(403)])
def test_other_trouble_is_recorded_and_logged_not_retried(acme, provider, sql, trouble):
    row = connect(acme)
    provider.userinfo_script.append(trouble)
    assert check_health(row.id) == {"outcome": "error"}  # returns: no retry storm
    after = rows.get(row.id)
    assert after.status == "active" and after.last_health_check_at is not None
    assert after.status_message.startswith("health check failed: GET http://localhost:")
    assert FIRST_ACCESS not in after.status_message
    assert [r[1] for r in refresh_jobs(sql, row.id)] == [10]  # nothing urgent queued


def test_the_sweep_queues_one_check_per_active_integration_and_never_piles_up(acme, provider, sql):
    ids = [connect(acme, name=f"i{n}").id for n in range(3)]
    sql("UPDATE lamplighter.integrations SET status = 'revoked' WHERE id = %s", (ids[1],))
    sweep = actors.integrations.sweep_health.fn

    assert sweep(batch_size=1) == {"queued": 2}
    assert sweep() == {"queued": 2}  # asked again: the unique keys keep one each
    assert sorted(sql("SELECT unique_key, state FROM dramatiq.queue WHERE actor_name = 'integrations.check_health'")) \
        == [(f"health-{ids[0]}", "queued"), (f"health-{ids[2]}", "queued")]
