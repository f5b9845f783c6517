"""The one rule that turns an actor's declared options, and a sender's, into job columns: used
by every send (broker._new_job), by the schedules the release step syncs (scheduler/sync.py,
through :func:`declared_job_columns`) and so by every cron tick (scheduler/ticks.py builds its job from
the synced schedule row)."""
from __future__ import annotations

from typing import Any, Mapping

import dramatiq

from storage import jobs
from storage.engine.codec import PayloadError

# Options a sender may give (send_with_options) that become job columns, not message options.
COLUMN_OPTIONS = ("unique_key", "unique_states", "unique_on_conflict", "concurrency_key", "concurrency_limit",
                  "tenant_id", "correlation_id", "priority")
# Of those, the ones an actor may declare as its defaults.
ACTOR_COLUMN_OPTIONS = ("unique_states", "unique_on_conflict", "concurrency_key", "concurrency_limit")


def job_columns(actor_name: str, declared: Mapping[str, Any], given: Mapping[str, Any], *,
                default_priority: int, max_retries: Any) -> dict[str, Any]:
    """The job columns of a message of ``actor_name``: what the sender ``given`` (its column
    options) over what the actor ``declared``; ``max_retries`` is the message's, else the
    actor's, else the Retries middleware's. Raises PayloadError for a bad value."""
    columns = dict(given)
    for name in ACTOR_COLUMN_OPTIONS:
        if name not in columns and declared.get(name) is not None:
            columns[name] = declared[name]
    priority = columns.pop("priority", default_priority)
    if not isinstance(priority, int):
        raise PayloadError(f"cannot send {actor_name}: priority must be an integer")
    unique_states = columns.pop("unique_states", None)
    if unique_states is not None and (isinstance(unique_states, str)
                                      or not all(isinstance(x, str) for x in unique_states)):
        raise PayloadError(f"cannot send {actor_name}: unique_states must be a list of states")
    on_conflict = columns.pop("unique_on_conflict", None) or "ignore"
    if on_conflict not in jobs.UNIQUE_POLICIES:
        raise PayloadError(f"cannot send {actor_name}: unique_on_conflict must be one of "
                           f"{', '.join(jobs.UNIQUE_POLICIES)}")
    limit = columns.pop("concurrency_limit", None)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise PayloadError(f"cannot send {actor_name}: concurrency_limit must be a positive integer")
    if limit is not None and columns.get("concurrency_key") is None:
        columns["concurrency_key"] = actor_name  # a per-actor limit
    return {
        "priority": priority,
        "max_attempts": None if max_retries is None else int(max_retries) + 1,
        "unique_states": None if unique_states is None else tuple(unique_states),
        "unique_on_conflict": on_conflict,
        "concurrency_limit": limit,
        **{k: (None if v is None else str(v)) for k, v in columns.items()},
    }


def default_max_retries(broker: dramatiq.Broker) -> Any:
    """The Retries middleware's max_retries (None without one)."""
    return next((m.max_retries for m in broker.middleware if isinstance(m, dramatiq.middleware.Retries)), None)


def declared_job_columns(broker: dramatiq.Broker, actor_name: str) -> dict[str, Any]:
    """The job columns of a plain message of ``actor_name`` on any dramatiq broker: what the
    release step writes into a schedule's row, for its ticks."""
    actor = broker.get_actor(actor_name)
    return job_columns(actor_name, actor.options, {}, default_priority=actor.priority,
                       max_retries=actor.options.get("max_retries", default_max_retries(broker)))
