"""Queue figures (waiting/scheduled/running/completed/failed/dead) and pause/resume.

Counts stay cheap however deep a queue is: each is exact up to :data:`EXACT_UP_TO` and past it
is the query planner's estimate, never below the bound, named in the figure's ``estimated``
(the dashboard and the CLI print it with "≈"). Oban Web's counts work the same way. An exact
count of a million-job backlog costs a scan of a million index entries on every page view.
"""
from __future__ import annotations

import datetime
import json
from contextlib import contextmanager
from dataclasses import dataclass, field

from storage.queries import queries, rows, runner, transaction

SQL = queries("queues")
execute = runner("queues")

# Past this many jobs in one queue and state, a count is estimated. With a million jobs waiting,
# the per-queue figures take about 6 ms and the per-actor ones (which read the jobs' rows) about
# 30 ms on PostgreSQL 15 with 2 cores; counting them all took 0.6-0.9 s when the machine was quiet.
EXACT_UP_TO = 20_000

FOREVER = (datetime.datetime.min.replace(tzinfo=datetime.timezone.utc),
           datetime.datetime.max.replace(tzinfo=datetime.timezone.utc))


@dataclass(frozen=True)
class QueueStats:
    queue_name: str
    waiting: int
    scheduled: int
    running: int
    completed: int
    failed: int
    dead: int
    cancelled: int
    oldest_waiting_age: float
    paused: bool
    estimated: tuple[str, ...] = field(default=())  # the figures above EXACT_UP_TO: estimates


@contextmanager
def counting():
    """A transaction for the figures' queries: they are cheap to run but look expensive to the
    planner (a bounded count per queue), which would JIT-compile them for most of a second."""
    with transaction():
        execute("queue_stats_settings")
        yield


def count_estimate(*, queue: str, state: str, actor: str | None = None,
                   available: tuple[datetime.datetime, datetime.datetime] = FOREVER) -> int:
    """The planner's estimate of how many jobs of ``queue`` (and ``actor``) are in ``state``
    with available_at in [from, until): it stands in for a count that stopped at the bound."""
    return planned_rows(execute("queue_count_estimate", {"queue": queue, "state": state, "actor": actor,
                                                         "from": available[0], "until": available[1]}))


def planned_rows(cursor) -> int:
    """The row count the planner expects, from a cursor holding an ``EXPLAIN (FORMAT JSON)``."""
    [[plan]] = cursor.fetchall()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def estimate_waiting(row: dict, *, queue: str, actor: str | None = None) -> list[str]:
    """When ``row``'s count of queued jobs stopped at the bound, raise its waiting (and its
    scheduled, when that count stopped too) to the planner's estimates, never below what was
    counted, and return the names of the figures it estimated. A queue's total is past the bound;
    an actor's share of it need not be."""
    queued_capped, scheduled_capped = row.pop("queued_capped"), row.pop("scheduled_capped")
    if not queued_capped:
        return []
    if not scheduled_capped:  # scheduled is as counted: the rest of the queued jobs wait
        queued = count_estimate(queue=queue, actor=actor, state="queued")
        floor = EXACT_UP_TO + 1 if actor is None else 0
        row["waiting"] = max(row["waiting"], floor - row["scheduled"], queued - row["scheduled"])
        return ["waiting"]
    split = row["counted_at"] + datetime.timedelta(microseconds=1)
    row["waiting"] = max(row["waiting"], count_estimate(queue=queue, actor=actor, state="queued",
                                                        available=(FOREVER[0], split)))
    row["scheduled"] = max(row["scheduled"], count_estimate(queue=queue, actor=actor, state="queued",
                                                            available=(split, FOREVER[1])))
    return ["waiting", "scheduled"]


def estimate_finished(row: dict, *, queue: str) -> list[str]:
    """A queue's finished figures whose count stopped at the bound become the planner's
    estimates (at least the bound); returns their names."""
    estimated = []
    for state in ("completed", "dead", "cancelled"):
        if row[state] > EXACT_UP_TO:
            row[state] = max(EXACT_UP_TO + 1, count_estimate(queue=queue, state=state))
            estimated.append(state)
    return estimated


def stats(*, window_seconds: float) -> list[QueueStats]:
    with counting():
        found = rows(execute("queue_stats", {"window_seconds": window_seconds, "exact_up_to": EXACT_UP_TO}))
        figures = []
        for row in found:
            estimated = estimate_waiting(row, queue=row["queue_name"]) + estimate_finished(row, queue=row["queue_name"])
            del row["counted_at"]
            figures.append(QueueStats(**{**row, "oldest_waiting_age": float(row["oldest_waiting_age"]),
                                         "estimated": tuple(estimated)}))
    return figures


def set_paused(name: str, paused: bool, *, by: str) -> None:
    execute("queue_set_paused", {"name": name, "paused": paused, "by": by})
