"""Job-table upkeep actors: thin transport over domain.retention and storage.jobs."""
from __future__ import annotations

import dramatiq
from periodiq import cron

from domain import retention
from storage import jobs, rate_limits, results
from storage import settings as settings_module
from storage.schedules import schedule

GROUP_RETENTION_SECONDS = 2 * 86_400  # past the barrier's day (dramatiq's GROUP_CALLBACK_BARRIER_TTL)


@dramatiq.actor(actor_name="maintenance.prune_jobs", queue_name="maintenance", priority=100,
                time_limit=30 * 60_000, max_retries=3,
                periodic=schedule("maintenance.prune_jobs", cron("17 * * * *"), overlap="skip"))
def prune_jobs(max_batches: int = 1000) -> dict:
    """Delete completed and cancelled jobs older than LAMPLIGHTER_COMPLETED_RETENTION and dead
    jobs older than LAMPLIGHTER_DEAD_RETENTION, with their history. Their events are audit rows
    (lamplighter.job_events is a view over the audit log) and stay until their month is archived."""
    current = settings_module.get()

    def batch(states, retention_seconds):
        def run():
            done = jobs.prune_batch(states=states, retention_seconds=retention_seconds,
                                    batch_size=current.prune_batch_size)
            return done.jobs, done.history_rows
        return run

    return retention.prune({
        "completed": batch(("completed", "cancelled"), current.completed_retention),
        "dead": batch(("dead",), current.dead_retention),
    }, max_batches=max_batches)


@dramatiq.actor(actor_name="maintenance.prune_results_and_limits", queue_name="maintenance", priority=100,
                time_limit=10 * 60_000, max_retries=3,
                periodic=schedule("maintenance.prune_results_and_limits", cron("*/10 * * * *"), overlap="skip"))
def prune_results_and_limits(max_batches: int = 1000) -> dict:
    """Delete expired dramatiq results and rate-limiter keys (their TTL passed by the database
    clock: they already count as absent) and the members of groups that ended more than a day
    ago (a group's barrier lives a day, dramatiq's default)."""
    size = settings_module.get().prune_batch_size
    counts = {}
    for kind, run_batch in (("results", lambda: results.prune(size)),
                            ("rate_limit_keys", lambda: rate_limits.prune(size)),
                            ("group_members", lambda: rate_limits.prune_group_members(GROUP_RETENTION_SECONDS, size))):
        counts[kind], _ = retention.until_done(run_batch, max_batches)
    return counts
