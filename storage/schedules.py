"""Schedules: how actors declare them, and the rows the scheduler keeps (migration 0003).

Declaring (next to the actor, periodiq's spelling)::

    from periodiq import cron
    from storage.schedules import schedule

    @dramatiq.actor(..., periodic=cron("0 3 * * *"))             # key = actor name, zone UTC
    def prune_expired(): ...

    @dramatiq.actor(..., periodic=[
        schedule("reports.weekly.berlin", cron("0 2 * * sun"), zone="Europe/Berlin",
                 kwargs={"region": "eu"}, misfire="run_once", grace=300, overlap="skip"),
        schedule("reports.weekly.newyork", "0 2 * * sun", zone="America/New_York",
                 kwargs={"region": "us"}),
    ])
    def weekly_report(region): ...

Actors may not import scheduler/ (layers), so what they write comes from periodiq (``cron``) or
from here (``schedule``). The expression is kept as text; scheduler/cron.py validates it, with
periodiq's defects fixed, when the release step syncs the declarations into the table.
:class:`PeriodicSchedules` is the middleware that makes dramatiq accept ``periodic=``; it checks
the shape of a declaration when the actor is declared and never touches a message (unlike
periodiq's middleware, which drops messages that waited more than 30 s).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

import dramatiq
import periodiq
from dramatiq.middleware import MiddlewareError

from storage.queries import queries, rows, runner

SQL = queries("schedules")
execute = runner("schedules")

MISFIRE_POLICIES = ("run_once", "skip")
OVERLAP_POLICIES = ("allow", "skip")
DEFAULT_GRACE = 60.0  # seconds: a failover across a minute boundary loses nothing
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


class DeclarationError(ValueError):
    """A schedule declaration is malformed; the message names the actor or the key."""


# ---- declarations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """One schedule as declared next to an actor; build it with :func:`schedule`."""

    key: str
    cron: str  # the expression as written, e.g. "0 2 * * sun" or "@daily"
    zone: str = "UTC"
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    misfire: str = "run_once"
    grace: float = DEFAULT_GRACE
    overlap: str = "allow"


def schedule(key: str, cron: str | periodiq.CronSpec, *, zone: str = "UTC", args: Sequence = (),
             kwargs: Mapping[str, Any] | None = None, misfire: str = "run_once", grace: float = DEFAULT_GRACE,
             overlap: str = "allow") -> Schedule:
    """A schedule for ``periodic=[...]``.

    key      unique across all actors; letters, digits, ``_ . : -`` (it names the schedule in the
             CLI, the tick table and job provenance, so renaming one starts a new schedule)
    cron     ``periodiq.cron("...")`` or the expression as text (5 fields or ``@daily`` etc.)
    zone     IANA zone the expression is read in (``Europe/Berlin``); default UTC
    args, kwargs  the job's arguments (JSON types)
    misfire  ``run_once``: ticks missed beyond the grace get one catch-up run; ``skip``: none
    grace    seconds a tick may be late and still fire as itself
    overlap  ``allow``, or ``skip`` a tick while this schedule's previous run waits or runs
    """
    if isinstance(cron, periodiq.CronSpec):
        cron = str(cron)  # the text it was parsed from; scheduler/cron.py re-reads it correctly
    if not isinstance(cron, str):
        raise DeclarationError(f"schedule {key!r}: cron must be periodiq's cron(...) or a string, got {cron!r}")
    made = Schedule(key=key, cron=cron, zone=zone, args=tuple(args), kwargs=dict(kwargs or {}),
                    misfire=misfire, grace=grace, overlap=overlap)
    check(made)
    return made


def check(declared: Schedule) -> None:
    """Shape checks that need no cron parser (the sync parses expressions and zones)."""
    key = declared.key
    if not isinstance(key, str) or not _KEY.match(key):
        raise DeclarationError(f"schedule key {key!r}: letters, digits, '_', '.', ':', '-'; 1 to 200")
    if declared.misfire not in MISFIRE_POLICIES:
        raise DeclarationError(f"schedule {key!r}: misfire must be one of {', '.join(MISFIRE_POLICIES)}, "
                               f"not {declared.misfire!r}")
    if declared.overlap not in OVERLAP_POLICIES:
        raise DeclarationError(f"schedule {key!r}: overlap must be one of {', '.join(OVERLAP_POLICIES)}, "
                               f"not {declared.overlap!r}")
    if isinstance(declared.grace, bool) or not isinstance(declared.grace, (int, float)) or not declared.grace >= 0:
        raise DeclarationError(f"schedule {key!r}: grace must be zero or more seconds, not {declared.grace!r}")
    if not isinstance(declared.zone, str) or not declared.zone:
        raise DeclarationError(f"schedule {key!r}: zone must be an IANA zone name, not {declared.zone!r}")
    if not all(isinstance(k, str) for k in declared.kwargs):
        raise DeclarationError(f"schedule {key!r}: kwargs keys must be strings")
    try:
        json.dumps([list(declared.args), dict(declared.kwargs)], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DeclarationError(f"schedule {key!r}: args and kwargs must be JSON types ({exc})") from None


def declared_schedules(actor_name: str, periodic: Any) -> list[Schedule]:
    """The schedules an actor's ``periodic=`` option declares: ``cron(...)`` (key = the actor's
    name), ``schedule(...)``, or a list of those."""
    values = list(periodic) if isinstance(periodic, (list, tuple)) else [periodic]
    if not values:
        raise DeclarationError(f"{actor_name}: periodic= is an empty list")
    found: list[Schedule] = []
    for value in values:
        if isinstance(value, Schedule):
            found.append(value)
        elif isinstance(value, (periodiq.CronSpec, str)):
            found.append(Schedule(key=actor_name, cron=str(value)))
        else:
            raise DeclarationError(f"{actor_name}: periodic= takes cron(...), schedule(...) or a list of "
                                   f"them, not {value!r}")
    keys = [s.key for s in found]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise DeclarationError(f"{actor_name}: schedule key(s) declared twice: {', '.join(duplicates)} "
                               "(give each schedule(...) its own key)")
    for declared in found:
        try:
            check(declared)
        except DeclarationError as exc:
            raise DeclarationError(f"{actor_name}: {exc}") from None
    return found


class PeriodicSchedules(dramatiq.Middleware):
    """Makes dramatiq accept the ``periodic`` actor option and checks its shape at declaration.

    It has no message hooks: a scheduled job runs however long it waited in the queue.
    """

    @property
    def actor_options(self):
        return {"periodic"}

    def before_declare_actor(self, broker, actor):
        # dramatiq logs and swallows exceptions from middleware hooks, except MiddlewareError
        # raised before an event: so a malformed declaration stops the import here.
        periodic = actor.options.get("periodic")
        if periodic is not None:
            try:
                declared_schedules(actor.actor_name, periodic)
            except DeclarationError as exc:
                raise DeclarationRefused(str(exc)) from None


class DeclarationRefused(DeclarationError, MiddlewareError):
    """A malformed ``periodic=`` declaration, raised through dramatiq's actor declaration."""


# ---- rows ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    """A declaration resolved against its actor: everything the table keeps from the code."""

    key: str
    actor_name: str
    queue_name: str
    priority: int
    max_attempts: int | None
    concurrency_key: str | None
    concurrency_limit: int | None
    cron: str
    zone: str
    args: list
    kwargs: dict
    misfire: str
    grace_seconds: float
    overlap: str


DEFINITION_FIELDS = tuple(Definition.__dataclass_fields__)


@dataclass(frozen=True)
class ScheduleRow(Definition):
    """A schedules row: the declaration as last synced, plus the operator's and the loop's state."""

    enabled: bool
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    last_fire_at: datetime | None
    next_fire_at: datetime | None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def definition(self) -> Definition:
        return Definition(**{name: getattr(self, name) for name in DEFINITION_FIELDS})


@dataclass(frozen=True)
class LastTick:
    fire_at: datetime
    kind: str
    outcome: str
    job_id: uuid.UUID | None
    missed: int
    job_state: str | None  # None: the job has been pruned (or none was enqueued)


@dataclass(frozen=True)
class ListedSchedule:
    schedule: ScheduleRow
    last_tick: LastTick | None


@dataclass(frozen=True)
class Tick:
    schedule_key: str
    fire_at: datetime
    kind: str
    outcome: str
    job_id: uuid.UUID | None
    missed: int
    recorded_at: datetime
    recorded_by: str


@dataclass(frozen=True)
class Lease:
    holder: str
    acquired_at: datetime
    expires_at: datetime
    previous_holder: str | None


def _row(found: dict) -> ScheduleRow:
    return ScheduleRow(**{k: v for k, v in found.items() if k in ScheduleRow.__dataclass_fields__})


def _params(definition: Definition, next_fire_at: datetime | None) -> dict:
    params = {name: getattr(definition, name) for name in DEFINITION_FIELDS}
    params["args"] = json.dumps(list(definition.args))
    params["kwargs"] = json.dumps(dict(definition.kwargs))
    params["next_fire_at"] = next_fire_at
    return params


def list_schedules(key: str | None = None) -> list[ListedSchedule]:
    listed = []
    for found in rows(execute("schedule_list", {"key": key})):
        last = None
        if found["last_tick_fire_at"] is not None:
            last = LastTick(fire_at=found["last_tick_fire_at"], kind=found["last_tick_kind"],
                            outcome=found["last_tick_outcome"], job_id=found["last_tick_job_id"],
                            missed=found["last_tick_missed"], job_state=found["last_job_state"])
        listed.append(ListedSchedule(schedule=_row(found), last_tick=last))
    return listed


def lock_all() -> tuple[list[ScheduleRow], datetime]:
    """Inside a transaction: every schedule, with the table locked against other syncs; and
    the database's now."""
    execute("schedule_lock_all")
    found = rows(execute("schedule_all"))
    now = found[0]["now"] if found else database_now()
    return [_row(r) for r in found], now


def insert(definition: Definition, *, next_fire_at: datetime) -> None:
    execute("schedule_insert", _params(definition, next_fire_at))


def update_declared(definition: Definition, *, next_fire_at: datetime | None) -> None:
    execute("schedule_update_declared", _params(definition, next_fire_at))


def disable(key: str) -> None:
    execute("schedule_disable", {"key": key})


def set_paused(key: str, paused: bool, *, by: str, next_fire_at: datetime | None = None) -> bool:
    """False when there is no such schedule."""
    params = {"key": key, "paused": paused, "by": by, "next_fire_at": next_fire_at}
    return execute("schedule_set_paused", params).fetchone() is not None


def due_keys(limit: int = 100) -> list[str]:
    return [r[0] for r in execute("schedule_due_keys", {"limit": limit}).fetchall()]


def lock_due(key: str) -> tuple[ScheduleRow, datetime] | None:
    """Inside a transaction: the schedule locked for its tick, if still due and not locked by
    someone else; with the database's now (the transaction's time)."""
    found = rows(execute("schedule_lock_due", {"key": key}))
    return (_row(found[0]), found[0]["now"]) if found else None


def lock_one(key: str) -> tuple[ScheduleRow, datetime] | None:
    found = rows(execute("schedule_lock_one", {"key": key}))
    return (_row(found[0]), found[0]["now"]) if found else None


def advance(key: str, *, next_fire_at: datetime, last_fire_at: datetime | None) -> None:
    execute("schedule_advance", {"key": key, "next_fire_at": next_fire_at, "last_fire_at": last_fire_at})


def active_run(key: str) -> uuid.UUID | None:
    found = execute("schedule_run_active", {"key": key}).fetchone()
    return found[0] if found else None


def record_tick(key: str, fire_at: datetime, *, kind: str, outcome: str, job_id: str | None, missed: int,
                recorded_by: str) -> bool:
    """True if this tick was not recorded before; False: someone already dealt with it."""
    params = {"key": key, "fire_at": fire_at, "kind": kind, "outcome": outcome, "job_id": job_id,
              "missed": missed, "recorded_by": recorded_by}
    return execute("schedule_tick_insert", params).fetchone() is not None


def ticks_for(key: str, limit: int = 100) -> list[Tick]:
    return [Tick(**r) for r in rows(execute("schedule_ticks_for", {"key": key, "limit": limit}))]


def prune_ticks(*, retention_seconds: float, batch_size: int = 5000) -> int:
    return execute("schedule_tick_prune", {"retention_seconds": retention_seconds, "batch_size": batch_size}).rowcount


def database_now() -> datetime:
    return execute("schedule_now").fetchone()[0]


def acquire_lease(holder: str, *, ttl_seconds: float) -> Lease | None:
    """Take or renew the leader lease; None when another holder's lease is still live."""
    found = rows(execute("lease_acquire", {"holder": holder, "ttl_seconds": ttl_seconds}))
    return Lease(**found[0]) if found else None


def lease_held(holder: str) -> bool:
    return execute("lease_held", {"holder": holder}).fetchone() is not None


def release_lease(holder: str) -> None:
    execute("lease_release", {"holder": holder})


def current_lease() -> dict | None:
    found = rows(execute("lease_get"))
    return found[0] if found else None
