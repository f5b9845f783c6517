"""The release step's sync: the schedules declared in the code become rows of the table.

`lamplighter migrate` calls :func:`definitions_from_broker` on the actors' broker and then
:func:`sync` -- never the scheduler process at start-up: during a rolling deploy an old and a new
release run side by side, and each would rewrite the table its own way.

* new declarations are added (next fire time: the first one after now);
* changed ones are updated (a new expression or zone gets a new next fire time; other changes
  keep it); a declaration that comes back after removal is enabled again;
* removed ones are disabled (the row and its ticks stay; `lamplighter schedule` shows them);
* an operator's pause is never touched.

Every expression and zone is checked with scheduler/cron.py first; a bad one stops the release
with one line naming the actor and the schedule, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from scheduler.cron import Cron, CronError, next_fire_time, validate_zone
from storage import connection, engine, schedules
from storage.schedules import DeclarationError, Definition

log = structlog.get_logger("lamplighter.scheduler")


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"schedules: {len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.disabled)} disabled, {len(self.unchanged)} unchanged")


def definitions_from_broker(broker) -> list[Definition]:
    """Every ``periodic=`` declaration of the broker's actors, resolved against its actor
    (queue, priority, attempts, concurrency limit), checked. Takes the broker as an argument:
    the scheduler does not import the actors package."""
    found: list[Definition] = []
    for name in sorted(broker.actors):
        actor = broker.actors[name]
        periodic = actor.options.get("periodic")
        if periodic is None:
            continue
        columns = engine.declared_job_columns(broker, name)  # the same rule as every send
        for declared in schedules.declared_schedules(name, periodic):
            found.append(Definition(
                key=declared.key, actor_name=name, queue_name=actor.queue_name, priority=columns["priority"],
                max_attempts=columns["max_attempts"], concurrency_key=columns.get("concurrency_key"),
                concurrency_limit=columns["concurrency_limit"], cron=declared.cron,
                zone=declared.zone, args=list(declared.args), kwargs=dict(declared.kwargs),
                misfire=declared.misfire, grace_seconds=float(declared.grace), overlap=declared.overlap))
    validate(found)
    return found


def validate(definitions: list[Definition]) -> None:
    """Expressions, zones, and keys unique across all actors; `DeclarationError` naming the actor."""
    owners: dict[str, str] = {}
    for d in definitions:
        try:
            Cron.parse(d.cron)
            validate_zone(d.zone)
        except CronError as exc:
            raise DeclarationError(f"{d.actor_name}: schedule {d.key!r}: {exc}") from None
        if d.key in owners:
            raise DeclarationError(f"{d.actor_name}: schedule key {d.key!r} is already declared by "
                                   f"{owners[d.key]}; keys are unique across actors")
        owners[d.key] = d.actor_name


def sync(definitions: list[Definition]) -> SyncReport:
    """Make the table match the declarations, in one transaction; logs each change."""
    validate(definitions)
    report = SyncReport()
    wanted = {d.key: d for d in definitions}
    db = connection.init_database()
    with db.atomic():
        existing, now = schedules.lock_all()
        by_key = {row.key: row for row in existing}
        for key, definition in sorted(wanted.items()):
            cron = Cron.parse(definition.cron)
            row = by_key.get(key)
            if row is None:
                following = next_fire_time(cron, now, definition.zone)
                schedules.insert(definition, next_fire_at=following)
                report.added.append(key)
                log.info("schedule_added", schedule=key, actor=definition.actor_name, cron=definition.cron,
                         zone=definition.zone, next_fire_at=following.isoformat())
                continue
            current = row.definition()
            changed = [name for name in schedules.DEFINITION_FIELDS
                       if _comparable(getattr(current, name)) != _comparable(getattr(definition, name))]
            if not changed and row.enabled:
                report.unchanged.append(key)
                continue
            following = row.next_fire_at
            if not row.enabled or "cron" in changed or "zone" in changed or following is None:
                following = next_fire_time(cron, now, definition.zone)
            schedules.update_declared(definition, next_fire_at=following)
            report.updated.append(key)
            log.info("schedule_updated", schedule=key, actor=definition.actor_name,
                     changed=changed + ([] if row.enabled else ["enabled"]),
                     next_fire_at=following.isoformat(), paused=row.paused)
        for key, row in sorted(by_key.items()):
            if key not in wanted and row.enabled:
                schedules.disable(key)
                report.disabled.append(key)
                log.info("schedule_disabled", schedule=key, actor=row.actor_name,
                         reason="no longer declared in the code")
    log.info("schedules_synced", added=len(report.added), updated=len(report.updated),
             disabled=len(report.disabled), unchanged=len(report.unchanged))
    return report


def _comparable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
