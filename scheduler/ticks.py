"""Ticks: a due schedule becomes one job, exactly once, in one transaction.

Each tick is its own short transaction on peewee's connection:

1. lock the schedule row if it is still due (``FOR UPDATE SKIP LOCKED``) and read the
   database's now;
2. check that this scheduler still holds an unexpired lease;
3. decide (scheduler/policy.py: grace, misfire) and apply the overlap policy;
4. insert the tick row ``(schedule key, fire time)`` -- if it exists, someone already dealt
   with this tick: nothing is enqueued;
5. enqueue the job through ``storage.jobs.enqueue_many`` (the one writer of job rows), which
   joins this transaction;
6. move the schedule's next fire time on.

The tick row and the job commit together or not at all, and the primary key makes a second
enqueue of the same tick impossible, whoever tries and however late.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from domain import audit
from scheduler import policy
from scheduler.cron import Cron, next_fire_time, next_fire_times, validate_zone
from storage import connection, jobs, schedules
from storage.message_ids import new_message_ids

log = structlog.get_logger("lamplighter.scheduler")


class ScheduleNotFound(LookupError):
    pass


class ScheduleDisabled(RuntimeError):
    """The schedule's declaration is gone from the code; it cannot be run."""


@dataclass(frozen=True)
class TickResult:
    key: str
    fire_at: datetime | None
    kind: str | None
    outcome: str  # enqueued | skipped_overlap | skipped_misfire | already_recorded | nothing_due
    job_id: str | None
    missed: int
    next_fire_at: datetime


def provenance(key: str, fire_at: datetime) -> str:
    """The job row's enqueued_by; the overlap check finds a schedule's runs by its prefix."""
    return f"cron:{key}@{fire_at.isoformat()}"


def build_job(row: schedules.ScheduleRow, *, fire_at: datetime, enqueued_by: str) -> jobs.NewJob:
    """The job for one tick. The message has the shape of dramatiq's ``Message.asdict()``; the
    scheduler does not import the actors (layers), so it builds it from the schedule row."""
    message_id = new_message_ids(1)[0]  # time-ordered, as every send's (storage/engine/codec.py)
    message = {
        "queue_name": row.queue_name,
        "actor_name": row.actor_name,
        "args": list(row.args),
        "kwargs": dict(row.kwargs),
        "options": {"schedule_key": row.key, "scheduled_for": fire_at.isoformat()},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    return jobs.NewJob(message_id=message_id, queue_name=row.queue_name, actor_name=row.actor_name,
                       message=message, priority=row.priority, max_attempts=row.max_attempts,
                       concurrency_key=row.concurrency_key, concurrency_limit=row.concurrency_limit,
                       enqueued_by=enqueued_by)


def fire_due(holder: str, *, limit: int = 100) -> list[TickResult]:
    """Fire every due schedule (the leader's poll). Returns what each tick did."""
    return [r for r in (fire_one(key, holder) for key in schedules.due_keys(limit)) if r is not None]


def fire_one(key: str, holder: str) -> TickResult | None:
    """One due schedule's tick; None if it is no longer due, locked by another scheduler, or
    this scheduler no longer holds the lease."""
    db = connection.init_database()
    with db.atomic():
        locked = schedules.lock_due(key)
        if locked is None:
            return None
        row, now = locked
        if not schedules.lease_held(holder):
            return None
        decision = policy.decide(Cron.parse(row.cron), row.zone, due_since=row.next_fire_at, now=now,
                                 grace=row.grace_seconds, misfire=row.misfire)
        if decision.fire_at is None:
            schedules.advance(key, next_fire_at=decision.next_fire_at, last_fire_at=None)
            return TickResult(key, None, None, "nothing_due", None, 0, decision.next_fire_at)
        outcome, job = "skipped_misfire", None
        if decision.enqueue:
            running = schedules.active_run(key) if row.overlap == "skip" else None
            if running is not None:
                outcome = "skipped_overlap"
            else:
                outcome = "enqueued"
                job = build_job(row, fire_at=decision.fire_at, enqueued_by=provenance(key, decision.fire_at))
        recorded = schedules.record_tick(key, decision.fire_at, kind=decision.kind, outcome=outcome,
                                         job_id=job.message_id if job else None, missed=decision.missed,
                                         recorded_by=holder)
        if not recorded:
            outcome, job = "already_recorded", None
        elif job is not None:
            jobs.enqueue_many([job])
        schedules.advance(key, next_fire_at=decision.next_fire_at, last_fire_at=decision.fire_at)
    result = TickResult(key, decision.fire_at, decision.kind, outcome, job.message_id if job else None,
                        decision.missed, decision.next_fire_at)
    log.info("schedule_tick", schedule=key, actor=row.actor_name, fire_at=decision.fire_at.isoformat(),
             kind=decision.kind, outcome=outcome, job_id=result.job_id, missed=decision.missed,
             late_s=round(decision.late_seconds, 3), next_fire_at=decision.next_fire_at.isoformat())
    return result


def run_now(key: str, *, by: str, source: str | None = None) -> TickResult:
    """`lamplighter schedule run KEY`: one run now, recorded as a manual tick at the request
    time. Works on a paused schedule (the operator asked); leaves the next fire time alone."""
    db = connection.init_database()
    with db.atomic():
        locked = schedules.lock_one(key)
        if locked is None:
            raise ScheduleNotFound(f"no schedule {key!r} (see `lamplighter schedule`)")
        row, now = locked
        if not row.enabled:
            raise ScheduleDisabled(f"schedule {key!r} is disabled: its declaration is gone from the code")
        fire_at = now
        if fire_at.second == 0 and fire_at.microsecond == 0:
            # Cron fire times are whole minutes; a manual tick never takes one's key.
            fire_at += timedelta(microseconds=1)
        job = build_job(row, fire_at=fire_at, enqueued_by=f"{provenance(key, fire_at)} manual by {by}")
        if not schedules.record_tick(key, fire_at, kind="manual", outcome="enqueued", job_id=job.message_id,
                                     missed=1, recorded_by=by):
            raise ScheduleDisabled(f"schedule {key!r}: a run was recorded at this very instant; try again")
        jobs.enqueue_many([job])
        audit.record(by, "schedule.run_now", target_type="schedule", target_id=key, source=source,
                     details={"job_id": job.message_id, "fire_at": fire_at.isoformat()})
    log.info("schedule_tick", schedule=key, actor=row.actor_name, fire_at=fire_at.isoformat(), kind="manual",
             outcome="enqueued", job_id=job.message_id, missed=1, by=by)
    return TickResult(key, fire_at, "manual", "enqueued", job.message_id, 1, row.next_fire_at)


def set_paused(key: str, paused: bool, *, by: str, source: str | None = None) -> None:
    """Pause or resume. Resuming starts from the next fire time after now: the ticks of the
    paused period are not caught up (that is what pausing asked for)."""
    db = connection.init_database()
    with db.atomic():
        locked = schedules.lock_one(key)
        if locked is None:
            raise ScheduleNotFound(f"no schedule {key!r} (see `lamplighter schedule`)")
        row, now = locked
        following = None if paused else next_fire_time(Cron.parse(row.cron), now, row.zone)
        schedules.set_paused(key, paused, by=by, next_fire_at=following)
        audit.record(by, "schedule.paused" if paused else "schedule.resumed", target_type="schedule", target_id=key,
                     source=source)
    log.info("schedule_paused" if paused else "schedule_resumed", schedule=key, by=by)


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as `lamplighter schedule` (and the console) show it."""

    schedule: schedules.ScheduleRow
    state: str  # enabled | paused | disabled
    next_fire_times: list[datetime]  # aware, in the schedule's zone
    last_tick: schedules.LastTick | None


def overview(key: str | None = None, *, count: int = 3) -> list[ScheduleView]:
    now = schedules.database_now()
    views = []
    for listed in schedules.list_schedules(key):
        row = listed.schedule
        state = "disabled" if not row.enabled else "paused" if row.paused else "enabled"
        upcoming: list[datetime] = []
        if state == "enabled":
            # The stored next fire time first (it may be due right now), then the ones after it.
            start = row.next_fire_at or now
            upcoming = [start] + next_fire_times(Cron.parse(row.cron), start, row.zone, count - 1)
        elif state == "paused":
            upcoming = next_fire_times(Cron.parse(row.cron), now, row.zone, count)  # once resumed
        tz = validate_zone(row.zone)
        views.append(ScheduleView(row, state, [t.astimezone(tz) for t in upcoming], listed.last_tick))
    return views
