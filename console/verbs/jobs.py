"""Jobs: `enqueue`, `jobs`, `job`, `retry`, `cancel`, `discard`. Rows come from storage/jobs.py."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console import cli

if TYPE_CHECKING:
    from storage.jobs import Job

STATES = ("queued", "running", "completed", "dead", "cancelled")


def register(verbs) -> None:
    e = verbs.add_parser("enqueue", help="enqueue a job for ACTOR")
    e.add_argument("actor", metavar="ACTOR")
    e.add_argument("--args", type=cli.json_args, default=[], help="JSON array (positional) or object (keyword)")
    e.add_argument("--queue", type=cli.queue_name, help="queue (default: the actor's)")
    e.add_argument("--delay", type=cli.non_negative, default=0.0, help="seconds before it may run")
    e.add_argument("--priority", type=cli.priority, help="lower runs first (default: the actor's)")
    e.set_defaults(run=cmd_enqueue)

    j = verbs.add_parser("jobs", help="list jobs, newest first (finished ones by finish time, waiting and "
                                      "running ones by enqueue time)")
    j.add_argument("--state", choices=STATES)
    j.add_argument("--actor")
    j.add_argument("--queue", type=cli.queue_name)
    j.add_argument("--limit", type=cli.positive_int, default=50)
    j.add_argument("--json", action="store_true", help="machine-readable output")
    j.set_defaults(run=cmd_jobs)

    one = verbs.add_parser("job", help="show one job and every attempt")
    one.add_argument("job_id", metavar="ID", type=cli.job_id)
    one.add_argument("--json", action="store_true")
    one.set_defaults(run=cmd_job)

    r = verbs.add_parser("retry", help="queue a dead, cancelled or completed job again (or, with --dead, "
                                       "every dead job matching the filters)")
    r.add_argument("job_id", metavar="ID", type=cli.job_id, nargs="?")
    r.add_argument("--args", type=cli.json_args, help="run with these arguments instead (recorded)")
    r.add_argument("--dead", action="store_true", help="bulk redrive of dead jobs; filter with:")
    r.add_argument("--actor", help="with --dead: only this actor")
    r.add_argument("--queue", type=cli.queue_name, help="with --dead: only this queue")
    r.add_argument("--error-type", help="with --dead: only this error type (e.g. TimeLimitExceeded)")
    r.add_argument("--limit", type=cli.positive_int, default=1000, help="with --dead: at most this many (1000)")
    r.set_defaults(run=cmd_retry)
    c = verbs.add_parser("cancel", help="cancel a waiting job, or ask a running one to stop")
    c.add_argument("job_id", metavar="ID", type=cli.job_id)
    c.set_defaults(run=cmd_cancel)
    d = verbs.add_parser("discard", help="give up on a waiting, scheduled or retry-pending job: dead, never run again")
    d.add_argument("job_id", metavar="ID", type=cli.job_id)
    d.set_defaults(run=cmd_discard)


# ---- views ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobRow:
    """A job as one line of `lamplighter jobs`."""

    id: str
    actor: str
    queue: str
    state: str
    attempt: int
    available_at: datetime
    changed: datetime
    last_error: str | None  # its first 60 characters


JOB_COLUMNS = [f.name for f in fields(JobRow)]


def job_rows(*, state: str | None = None, actor: str | None = None, queue: str | None = None,
             limit: int = 50) -> list[JobRow]:
    """Jobs matching every given filter, newest first: the jobs page's order (storage.jobs.page)."""
    from storage import jobs

    return [JobRow(id=str(j.message_id), actor=j.actor_name, queue=j.queue_name, state=j.state,
                   attempt=j.attempt, available_at=j.available_at, changed=j.mtime,
                   last_error=(j.last_error or "")[:60] or None)
            for j in jobs.list_jobs(state=state, actor=actor, queue=queue, limit=limit)]


@dataclass(frozen=True)
class EventRow:
    """An operator's action on a job (redriven, cancelled, ...)."""

    at: datetime
    event: str
    by: str | None
    detail: str | None  # JSON, its first 80 characters


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    outcome: str
    started: datetime | None
    finished: datetime
    duration_ms: float | None
    worker: str | None  # the first 8 characters of the worker's id
    error: str | None  # "type: message", its first 80 characters


EVENT_COLUMNS = [f.name for f in fields(EventRow)]
ATTEMPT_COLUMNS = [f.name for f in fields(AttemptRow)]


@dataclass(frozen=True)
class JobView:
    """One job as `lamplighter job` shows it."""

    job: Job  # as stored, with every attempt and event (`job --json` prints this)
    fields: list[tuple[str, Any]]  # (label, value) in the order they are shown
    events: list[EventRow]
    attempts: list[AttemptRow]


def job_view(job_id: str) -> JobView:
    """Raises storage.jobs.JobNotFound."""
    from storage import jobs

    job = jobs.get(job_id)
    shown = [("id", job.message_id), ("actor", job.actor_name), ("queue", job.queue_name),
             ("state", job.state), ("args", json.dumps(job.args)), ("kwargs", json.dumps(job.kwargs)),
             ("priority", job.priority), ("enqueued_at", job.enqueued_at), ("enqueued_by", job.enqueued_by),
             ("available_at", job.available_at), ("attempts", f"{job.attempt} of {job.max_attempts or 'unlimited'}"),
             ("worker", job.worker_id), ("finished_at", job.finished_at), ("tenant", job.tenant_id),
             ("last_error", job.last_error)]
    if job.state == "queued" and job.attempt:
        shown.insert(10, ("next_attempt", job.available_at))
    if job.unique_key:
        shown.append(("unique_key", f"{job.unique_key} (held while {', '.join(job.unique_states or []) or 'never'})"))
    if job.concurrency_key:
        shown.append(("concurrency", f"{job.concurrency_key} (at most {job.concurrency_limit or 1} at once)"))
    if job.cancel_requested:
        shown.append(("cancel", "requested"))
    events = [EventRow(at=e.at, event=e.event, by=e.requested_by,
                       detail=json.dumps(e.detail)[:80] if e.detail else None) for e in job.events]
    attempts = [AttemptRow(attempt=a.attempt, outcome=a.outcome, started=a.started_at, finished=a.finished_at,
                           duration_ms=a.duration_ms, worker=str(a.worker_id)[:8] if a.worker_id else None,
                           error=f"{a.error_type}: {a.error_message}"[:80] if a.error_type else None)
                for a in job.attempts]
    return JobView(job=job, fields=shown, events=events, attempts=attempts)


# ---- actions -------------------------------------------------------------------------------

def _positional_and_keyword(arguments: list | dict) -> tuple[list, dict]:
    return (arguments, {}) if isinstance(arguments, list) else ([], arguments)


def enqueue(actor_name: str, arguments: list | dict, *, queue: str | None, delay: float, priority: int | None,
            by: str) -> str:
    """Enqueue a job for a declared actor; returns its id. Arguments that do not fit the
    actor's signature, or a payload over the size limit, are a UsageError."""
    from console import enqueueing

    positional, keyword = _positional_and_keyword(arguments)
    request = enqueueing.JobRequest(actor=actor_name, args=positional, kwargs=keyword, queue=queue,
                                    delay=delay or None, priority=priority)
    try:
        return enqueueing.send([enqueueing.prepare(request)], by=by)[0]
    except enqueueing.EnqueueRefused as exc:
        raise cli.UsageError(str(exc)) from None


def retry(job_id: str, *, arguments: list | dict | None, by: str) -> None:
    """Queue a dead, cancelled or completed job again; with ``arguments``, run it with those
    instead (the previous ones are recorded in the event)."""
    if arguments is None:
        retry_with(job_id, by=by)
    else:
        positional, keyword = _positional_and_keyword(arguments)
        retry_with(job_id, args=positional, kwargs=keyword, by=by)


def retry_with(job_id: str, *, args: list | None = None, kwargs: dict | None = None, by: str,
               source: str | None = None) -> None:
    """:func:`retry` with positional and keyword arguments apart (the HTTP API's shape); None for
    both keeps the job's own. ``source``: the address the request came from (recorded)."""
    from storage import jobs

    message, detail = None, {"edited_args": False}
    if args is not None or kwargs is not None:
        job = jobs.get(job_id)
        message = {**job.message, "args": list(args or []), "kwargs": dict(kwargs or {})}
        detail = {"edited_args": True, "previous": {"args": job.args, "kwargs": job.kwargs}}
    if source is not None:
        detail["source"] = source
    jobs.requeue(job_id, message=message, by=by, detail=detail)


# ---- commands ------------------------------------------------------------------------------

def cmd_enqueue(args, settings) -> int:
    print(enqueue(args.actor, args.args, queue=args.queue, delay=args.delay, priority=args.priority,
                  by=cli.operator()))
    return 0


def cmd_jobs(args, settings) -> int:
    rows = job_rows(state=args.state, actor=args.actor, queue=args.queue, limit=args.limit)
    cli.print_rows(rows, JOB_COLUMNS, as_json=args.json)
    return 0


def cmd_job(args, settings) -> int:
    view = job_view(args.job_id)
    if args.json:
        cli.print_json(view.job)
        return 0
    for name, value in view.fields:
        print(f"{name + ':':14}{cli.cell(value)}")
    print()
    if view.events:
        print(cli.table(view.events, EVENT_COLUMNS))
        print()
    print(cli.table(view.attempts, ATTEMPT_COLUMNS))
    return 0


def cmd_retry(args, settings) -> int:
    from storage import jobs

    if args.dead:
        if args.job_id or args.args is not None:
            raise cli.UsageError("--dead redrives by filters; give no ID and no --args")
        redriven = jobs.requeue_matching(actor=args.actor, queue=args.queue, error_type=args.error_type,
                                         limit=args.limit, by=cli.operator())
        print(f"{len(redriven)} dead job(s) queued again")
        return 0
    if not args.job_id:
        raise cli.UsageError("give a job ID, or --dead with filters for a bulk redrive")
    if args.actor or args.queue or args.error_type:
        raise cli.UsageError("--actor, --queue and --error-type go with --dead")
    retry(args.job_id, arguments=args.args, by=cli.operator())
    print(f"{args.job_id} queued again" + (" with edited arguments" if args.args is not None else ""))
    return 0


def cmd_cancel(args, settings) -> int:
    from storage import jobs

    print(f"{args.job_id}: {jobs.cancel(args.job_id, by=cli.operator())}")
    return 0


def cmd_discard(args, settings) -> int:
    from storage import jobs

    jobs.discard(args.job_id, by=cli.operator())
    print(f"{args.job_id}: discarded")
    return 0
