"""Alerts on failed jobs (alerts.failed_jobs, every minute): the job history is read after a
watermark, and two rules open, count and resolve incidents through domain/alerts.py.

* ``jobs.critical_failed`` (subject: the actor): an attempt of a critical actor
  (``critical=True`` on its decorator) that ended dead opens the incident or counts one more;
  the actor's next completed attempt resolves it.
* ``jobs.failure_rate`` (subject: the actor): more failed, dead or lost attempts in the actor's
  window than its threshold (``failure_threshold=10, failure_window=3600`` on the decorator, the
  defaults) opens or touches it; once the count is back at or under the threshold it resolves.

The first run starts with the attempts of the last ``FIRST_LOOKBACK_SECONDS``: a deployment
that gains this reader with months of history is told about now, not about every dead job it ever
had (at 20,000 rows a run that took hours, while new failures waited behind them).

Each batch of history rows and the watermark that passes it commit together, so a run killed
half-way and run again neither misses an attempt nor counts one twice. Rows are read once they
are ``settle_seconds`` old: a finish committed late, with a lower id than one already read,
is still ahead of the watermark.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from domain import alerts
from storage import job_alerts as history
from storage import watermarks
from storage.queries import transaction

WATERMARK = "alerts.failed_jobs"
FIRST_LOOKBACK_SECONDS = 3600
CRITICAL_RULE = "jobs.critical_failed"
RATE_RULE = "jobs.failure_rate"


@dataclass(frozen=True)
class ActorPolicy:
    """An actor's alerting options, from its decorator."""

    critical: bool = False
    failure_threshold: int = 10  # more failures than this in the window opens a failure-rate alert
    failure_window: int = 3600  # seconds


DEFAULT_POLICY = ActorPolicy()


def check(policies: Mapping[str, ActorPolicy], *, settle_seconds: float = 10.0, batch_size: int = 1000,
          max_batches: int = 20, audience: alerts.Audience | None = None) -> dict[str, int]:
    """Run both rules; counts for the job's history row. ``policies`` by actor name (actors not
    in it get the defaults: not critical, more than 10 failures an hour)."""
    counts = {"attempts": 0, "critical_opened": 0, "critical_touched": 0, "critical_resolved": 0,
              "rate_opened": 0, "rate_touched": 0, "rate_resolved": 0}
    position = watermarks.get(WATERMARK, first=lambda: history.start_position(FIRST_LOOKBACK_SECONDS))
    for _ in range(max_batches):
        batch = history.history_after(position, settle_seconds=settle_seconds, limit=batch_size)
        if not batch:
            break
        with transaction():
            for attempt in batch:
                if not policies.get(attempt.actor_name, DEFAULT_POLICY).critical:
                    continue
                subject = ("actor", attempt.actor_name)
                if attempt.outcome == "dead":
                    touch = alerts.open_or_touch(CRITICAL_RULE, subject, {
                        "job_id": attempt.job_id, "error_type": attempt.error_type,
                        "finished_at": attempt.finished_at.isoformat()}, audience=audience)
                    counts["critical_opened" if touch.opened else "critical_touched"] += 1
                elif attempt.outcome == "completed":
                    counts["critical_resolved"] += alerts.resolve(CRITICAL_RULE, subject, audience=audience) is not None
            position = batch[-1].id
            watermarks.set_position(WATERMARK, position)
        counts["attempts"] += len(batch)
    _failure_rates(policies, counts, audience)
    return counts


def _failure_rates(policies: Mapping[str, ActorPolicy], counts: dict[str, int], audience) -> None:
    windows = {DEFAULT_POLICY.failure_window} | {p.failure_window for p in policies.values()}
    over: set[str] = set()
    for window in sorted(windows):
        for actor, failures in history.failures_in_window(window).items():
            policy = policies.get(actor, DEFAULT_POLICY)
            if policy.failure_window != window or failures <= policy.failure_threshold:
                continue
            over.add(actor)
            touch = alerts.open_or_touch(RATE_RULE, ("actor", actor), {
                "failures": failures, "window_s": window, "threshold": policy.failure_threshold}, audience=audience)
            counts["rate_opened" if touch.opened else "rate_touched"] += 1
    for alert in alerts.list_alerts(open_only=True, limit=10_000):
        if alert.rule == RATE_RULE and alert.subject_kind == "actor" and alert.subject not in over:
            counts["rate_resolved"] += alerts.resolve(RATE_RULE, ("actor", alert.subject), audience=audience) is not None
