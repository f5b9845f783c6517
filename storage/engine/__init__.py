"""The queue engine: dramatiq's broker on PostgreSQL, with the table and message format of
dramatiq-pg.

The public API, what the rest of Lamplighter imports (from ``storage.engine``, never from its
modules):

* :class:`LamplighterBroker` — the broker ``actors/__init__.py`` builds; ``broker.send_many``
  and ``broker.enqueue_many`` are the bulk enqueue paths;
* :func:`cancel_requested` — for actors, between steps; ``current_attempt`` — which attempt of
  its job a thread runs;
* :data:`enqueued_by` — who is enqueueing (the CLI, scheduler and API set it);
* :class:`PayloadError` — a message that cannot be sent;
* :func:`declared_job_columns` — the job columns an actor's declaration gives its messages (the
  scheduler's ticks use the same rule as every send);
* :class:`Results` and :class:`GroupCallbacks` — dramatiq's middleware of those names, whose
  results and group count-downs the finish statement writes (``results``); ``broker.postpone``
  sends a claimed job back unstarted for a while (storage/rate_limits.py's window limits).

Reading order, each module one job:

1. ``codec`` — messages in and out of the table: checked at send, decoded at claim.
2. ``connection`` — the engine's own reconnecting connections (the claim connection the consumers
   share, a claim at a time); lost connection vs refusal.
3. ``broker`` — sending (one row per message), dramatiq's middleware signals, the end of each
   attempt as the finisher's item.
4. ``consumer`` — claims batches of one queue; waits on LISTEN (storage/wakeups.py) or polls;
   ``listener`` — the process's one LISTEN session, shared by its consumers.
5. ``claims`` and ``lifecycle`` — what the process holds, per-job bookkeeping, graceful stop.
6. ``finisher`` — starts and finishes of every thread grouped into one commit; ``results`` —
   what a finish carries for dramatiq's results and group callbacks.
7. ``presence`` — the heartbeat, and the rescue of jobs held by workers that stopped beating.

The SQL is in storage/sql/jobs.sql (claims, finishes) and storage/sql/workers.sql (heartbeats,
rescue).
"""
from storage.engine.broker import LamplighterBroker
from storage.engine.codec import PayloadError
from storage.engine.columns import declared_job_columns
from storage.engine.context import cancel_requested, current_attempt, current_job_id, enqueued_by
from storage.engine.results import GroupCallbacks, Results

__all__ = ["GroupCallbacks", "LamplighterBroker", "PayloadError", "Results", "cancel_requested", "current_attempt",
           "current_job_id", "declared_job_columns", "enqueued_by"]
