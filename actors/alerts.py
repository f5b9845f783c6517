"""Alert actors: thin transport over domain.job_alerts.

Schedule (declared with the scheduler): alerts.failed_jobs every minute (misfire skip, overlap
skip: a late or doubled run would only read the same history again). The actors' alerting options
(``critical=``, ``failure_threshold=``, ``failure_window=``; actors/middleware.py) come from this
worker's broker: an actor this release does not declare gets the defaults.
"""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import job_alerts
from storage.schedules import schedule


def policies(broker: dramatiq.Broker) -> dict[str, job_alerts.ActorPolicy]:
    default = job_alerts.DEFAULT_POLICY
    return {name: job_alerts.ActorPolicy(
        critical=actor.options.get("critical", False),
        failure_threshold=actor.options.get("failure_threshold", default.failure_threshold),
        failure_window=actor.options.get("failure_window", default.failure_window))
        for name, actor in broker.actors.items()}


@dramatiq.actor(actor_name="alerts.failed_jobs", queue_name="maintenance", priority=5, time_limit=5 * 60_000,
                max_retries=0, periodic=schedule("alerts.failed_jobs", cron("* * * * *"), misfire="skip",
                                                 overlap="skip"))
def failed_jobs(settle_seconds: float = 10.0) -> dict:
    return job_alerts.check(policies(dramatiq.get_broker()), settle_seconds=settle_seconds)
