"""What a due schedule does now: the misfire policy as a pure function (no database).

A schedule is due when its next fire time has come. Between that fire time and now there may
be several fire times (the scheduler was down, or no leader held the lease). The rule, for
every schedule:

* the LATEST due fire time is the one that counts; at most one job is enqueued per decision,
  never a burst of every missed tick;
* if it is at most ``grace`` seconds late, it fires as itself (``scheduled``): a failover or a
  slow poll loses nothing. Earlier due fire times are covered by it;
* otherwise it is a misfire: ``run_once`` enqueues one ``catch_up`` run, recorded with that
  latest missed fire time; ``skip`` enqueues nothing and records the skip;
* the next fire time is the first one strictly after now.

The overlap policy needs the database (is the previous run still waiting or running?) and is
applied by scheduler/ticks.py after this decision.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.cron import Cron, fire_times_between, next_fire_time

# Bound on the fire times looked at in one decision (a minutely schedule down for a week);
# only the latest matters, the count is for the log line.
MAX_COUNTED = 100_000


@dataclass(frozen=True)
class Decision:
    fire_at: datetime | None  # the tick to record; None: nothing was due after all
    kind: str | None  # scheduled | catch_up
    enqueue: bool
    missed: int  # how many due fire times this decision stands for
    late_seconds: float
    next_fire_at: datetime


def decide(cron: Cron, zone: str, *, due_since: datetime, now: datetime, grace: float, misfire: str) -> Decision:
    """``due_since`` is the schedule's stored next fire time (a fire time at or before now)."""
    # (due_since - 1 µs, now] holds due_since itself when it is a fire time.
    due = fire_times_between(cron, due_since - timedelta(microseconds=1), now, zone, limit=MAX_COUNTED)
    following = next_fire_time(cron, now, zone)
    if not due:  # the stored time was not a fire time of this expression (edited by hand)
        return Decision(None, None, False, 0, 0.0, following)
    latest = due[-1]
    late = (now - latest).total_seconds()
    if late <= grace:
        return Decision(latest, "scheduled", True, len(due), late, following)
    return Decision(latest, "catch_up", misfire == "run_once", len(due), late, following)
