"""What an attempt's finish carries besides the attempt: a dramatiq result, and a group member's
completion. job_finish_many writes both in the finish's own statement (storage/sql/jobs.sql, the
``kept`` and ``grouped`` parts), so neither costs a round trip of its own, and neither can be
recorded without the finish or twice: a worker killed before its finish is committed runs the job
again; one killed after has recorded it once. Jobs of actors without these options add nothing.

* :class:`Results` — dramatiq's Results middleware whose hooks store nothing themselves:
  ``store_results`` and ``result_ttl`` per actor or message, as in dramatiq; give it a
  ``storage.results.PostgresResultBackend`` so ``message.get_result()`` reads it.
* :class:`GroupCallbacks` — dramatiq's GroupCallbacks middleware (``group.run()`` creates the
  barrier through its rate limiter backend) whose hook counts nothing: the finish of a completed
  member does, and migration 0017's trigger enqueues the callbacks after the last one.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dramatiq.message import Message
from dramatiq.middleware import GroupCallbacks as DramatiqGroupCallbacks
from dramatiq.results import Results as DramatiqResults
from dramatiq.results.result import wrap_exception, wrap_result

from storage import jobs
from storage.engine import codec

if TYPE_CHECKING:
    from storage.engine.broker import LamplighterBroker

# The job columns a callback carries into lamplighter.group_member_done_v1 (migration 0017).
CALLBACK_FIELDS = ("message_id", "queue_name", "actor_name", "priority", "max_attempts", "concurrency_key",
                   "concurrency_limit", "tenant_id", "correlation_id", "enqueued_by")


class Results(DramatiqResults):
    """dramatiq's Results; the finish stores the result (see the module docstring)."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        pass

    def after_skip_message(self, broker, message):
        pass

    def after_nack(self, broker, message):
        pass


class GroupCallbacks(DramatiqGroupCallbacks):
    """dramatiq's GroupCallbacks; the finish counts the member (see the module docstring)."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        pass


class Carried:
    """The finish fields for one broker's Results / GroupCallbacks middleware."""

    def __init__(self, broker: "LamplighterBroker"):
        self.results = next((m for m in broker.middleware if isinstance(m, Results)), None)
        self.groups = any(isinstance(m, GroupCallbacks) for m in broker.middleware)

    def fields(self, broker: "LamplighterBroker", message, outcome: str, result: Any,
               exc: BaseException | None) -> dict | None:
        extra: dict[str, Any] = {}
        if self.results is not None and outcome != "failed":
            store, ttl = self.results._lookup_options(broker, message)
            if store:
                extra.update(result_key=self.results.backend.build_message_key(message), result_ttl_ms=int(ttl),
                             result=_storable(result, broker.settings.max_payload_bytes) if outcome == "completed"
                             else _failure(exc if exc is not None else Exception(outcome)))
        if self.groups and outcome == "completed":
            group_id = message.options.get("group_completion_uuid")
            callbacks = message.options.get("group_completion_callbacks")
            if group_id and callbacks:
                extra.update(group_id=group_id, group_callbacks=[_callback(broker, c) for c in callbacks])
        return extra or None


def _storable(result: Any, max_bytes: int) -> Any:
    """The result as dramatiq wraps it, or a failure get_result raises if jsonb cannot hold it
    faithfully (not JSON, NaN, a NUL character or a lone surrogate) or it is larger than a
    message may be: never altered in silence, and never a refusal of the whole finish batch."""
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return wrap_exception(TypeError(f"the actor's result is not JSON: {codec.storable(str(exc))}"))
    if len(text) > max_bytes:
        return wrap_exception(ValueError(f"the actor's result is {len(text)} bytes of JSON, more than "
                                         f"LAMPLIGHTER_MAX_PAYLOAD_BYTES ({max_bytes})"))
    if codec.storable_value(result) != result:
        return wrap_exception(ValueError("the actor's result holds a NUL character or a lone surrogate, "
                                         "which PostgreSQL's jsonb cannot store"))
    return wrap_result(result)


def _failure(exc: BaseException) -> dict:
    wrapped = wrap_exception(exc)
    wrapped["exn"] = {k: codec.storable(v) for k, v in wrapped["exn"].items()}
    return wrapped


def _callback(broker: "LamplighterBroker", message: dict) -> dict:
    job = broker._new_job(Message(**message), None)
    entry = {name: getattr(job, name) for name in CALLBACK_FIELDS}
    entry["message"] = json.loads(jobs.message_text(job))
    return entry
