"""Job rows: the one enqueue path, look-ups and operator actions (retry, cancel, prune).

``enqueue_many`` is the only code that writes a job row. It runs on peewee's connection, so
called inside ``database.atomic()`` it joins the caller's transaction: the job becomes visible
to workers only if that transaction commits. Jobs with a unique key go through the database
function ``lamplighter.job_insert_unique`` (the same one ``lamplighter.enqueue()`` uses).
"""
from __future__ import annotations

import collections
import io
import json
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any, Sequence

from storage import connection
from storage import queries as queries_module
from storage import settings as settings_module
from storage.queries import queries

SQL = queries("jobs")
STATES = ("queued", "running", "completed", "dead", "cancelled")
# A unique key is always held while the job waits or runs; these may be added.
OPTIONAL_UNIQUE_STATES = ("completed", "dead", "cancelled")
UNIQUE_POLICIES = ("ignore", "replace", "reschedule_earlier", "reschedule_later")


class JobNotFound(LookupError):
    pass


class JobStateConflict(RuntimeError):
    """The job is not in a state that allows the requested action."""


@dataclass(frozen=True)
class NewJob:
    """A job as handed to :func:`enqueue_many`; ``message`` is dramatiq's message, as a dict or
    already encoded as JSON text (the broker encodes once, to check it at send time)."""

    message_id: str
    queue_name: str
    actor_name: str
    message: dict[str, Any] | str
    priority: int = 0
    delay_ms: int = 0
    max_attempts: int | None = None
    unique_key: str | None = None
    unique_states: tuple[str, ...] | None = None  # besides queued and running
    unique_on_conflict: str = "ignore"
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None
    enqueued_by: str | None = None
    parent_id: str | None = None  # the running job that enqueues this one, if any


@dataclass(frozen=True)
class JobEvent:
    at: datetime
    event: str
    requested_by: str | None
    detail: dict


@dataclass(frozen=True)
class Job:
    message_id: uuid.UUID
    queue_name: str
    actor_name: str
    state: str
    message: dict[str, Any]
    priority: int
    available_at: datetime
    enqueued_at: datetime
    attempt: int
    max_attempts: int | None
    worker_id: uuid.UUID | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    unique_key: str | None
    unique_states: list | None
    concurrency_key: str | None
    concurrency_limit: int | None
    tenant_id: str | None
    correlation_id: str | None
    enqueued_by: str | None
    last_error: str | None
    cancel_requested: bool
    mtime: datetime
    attempts: tuple = field(default=())
    events: tuple = field(default=())

    @property
    def args(self) -> list:
        # Only a list or a dict is arguments: a row written by SQL may hold any JSON there.
        found = self.message.get("args") if isinstance(self.message, dict) else None
        return list(found) if isinstance(found, list) else []

    @property
    def kwargs(self) -> dict:
        found = self.message.get("kwargs") if isinstance(self.message, dict) else None
        return dict(found) if isinstance(found, dict) else {}


rows = queries_module.rows


def execute(name: str, params: dict | None = None, *, conn=None):
    """Run a named query of storage/sql/jobs.sql (see storage.queries.run)."""
    return queries_module.run(SQL, name, params, conn=conn)


def execute_prepared(name: str, params: dict, *, conn=None):
    """A hot query of this module as a prepared statement (see storage.queries.execute), on
    ``conn`` or on peewee's connection (joining its transaction, if one is open)."""
    prepare = settings_module.get().prepared_statements
    if conn is not None:
        return queries_module.execute(conn.cursor(), "jobs", name, params, prepare=prepare)
    db = connection.init_database()
    try:
        return queries_module.execute(db.cursor(), "jobs", name, params, prepare=prepare)
    except queries_module.StalePreparedStatement:
        if db.in_transaction():
            raise  # the caller's transaction is aborted: only the caller can retry it
        return queries_module.execute(db.cursor(), "jobs", name, params, prepare=prepare)


_PLAIN_FIELDS = ("message_id", "queue_name", "actor_name", "message", "priority", "delay_ms", "max_attempts",
                 "concurrency_key", "concurrency_limit", "tenant_id", "correlation_id", "enqueued_by")
_UNIQUE_SET_FIELDS = _PLAIN_FIELDS + ("unique_key", "unique_states")


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def message_text(job: NewJob) -> str:
    return job.message if isinstance(job.message, str) else _COMPACT_JSON.encode(job.message)


_ALL_FIELDS = tuple(f.name for f in dataclass_fields(NewJob))


def encode_new_jobs(jobs: Sequence[NewJob], fields: Sequence[str] | None = None) -> str:
    """A JSON array of the jobs' ``fields``; each message's text is spliced in as it is, not
    decoded and encoded again (the bulk path's largest cost was JSON work)."""
    return "[" + ",".join(_json_entries(jobs, fields or _ALL_FIELDS)) + "]"


def _json_entries(jobs: Sequence[NewJob], fields: Sequence[str]) -> list[str]:
    others = [f for f in fields if f != "message"]
    encode = _COMPACT_JSON.encode
    entries = []
    for job in jobs:
        rest = encode({f: getattr(job, f) for f in others})
        entries.append('{"message":' + message_text(job) + ("," + rest[1:] if len(rest) > 2 else "}"))
    return entries


# From this many plain jobs on, enqueue_many streams them with COPY: about twice as fast per row
# as the set-based INSERT (no executor per row), at the price of two more round trips.
COPY_THRESHOLD = 100
_COPY_COLUMNS = ("message_id", "queue_name", "actor_name", "message", "priority", "max_attempts", "tenant_id",
                 "correlation_id", "enqueued_by")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_rows(jobs: Sequence[NewJob]) -> io.StringIO:
    """The jobs as COPY text rows (tab-separated, backslash escapes, \\N for NULL)."""
    lines = []
    for job in jobs:
        lines.append("\t".join((job.message_id, _copy_field(job.queue_name), _copy_field(job.actor_name),
                                _copy_field(message_text(job)), str(job.priority or 0),
                                _copy_field(job.max_attempts), _copy_field(job.tenant_id),
                                _copy_field(job.correlation_id), _copy_field(job.enqueued_by))))
    lines.append("")
    return io.StringIO("\n".join(lines))


def _copy_in(jobs: Sequence[NewJob]) -> bool:
    """Stream plain, immediate jobs into the queue with COPY, then wake each queue's workers;
    in its own transaction, or a savepoint of the caller's. False, with nothing written, when a
    message_id already exists (a re-send): the caller takes the upsert path instead."""
    return _copy_text(_copy_rows(jobs), collections.Counter(job.queue_name for job in jobs))


def copy_in_uniform(queue_name: str, actor_name: str, messages: Sequence[tuple[str, str]], *, priority: int,
                    max_attempts: int | None, enqueued_by: str | None) -> bool:
    """The bulk path of ``broker.send_many``: many jobs of one actor that differ only in
    (message_id, message text), streamed with COPY. The shared columns are escaped once, and a
    compact JSON text needs only its backslashes doubled (JSON escapes every control
    character). Same contract as :func:`_copy_in`: False, nothing written, on a re-send."""
    head = f"\t{_copy_field(queue_name)}\t{_copy_field(actor_name)}\t"
    tail = "\t" + "\t".join((str(priority or 0), _copy_field(max_attempts), "\\N", "\\N", _copy_field(enqueued_by)))
    text = "\n".join([message_id + head + (message.replace("\\", "\\\\") if "\\" in message else message) + tail
                      for message_id, message in messages])
    return _copy_text(io.StringIO(text + "\n"), {queue_name: len(messages)})


def _copy_text(rows: io.StringIO, queues: dict[str, int]) -> bool:
    import psycopg2

    db = connection.init_database()
    try:
        with db.atomic():
            cursor = db.cursor()
            cursor.copy_expert(SQL["job_copy_in"].replace("%%", "%"), rows)
            names = sorted(queues)
            cursor.execute(SQL["job_wake_queues"], {"queues": names, "counts": [queues[q] for q in names]})
    except psycopg2.errors.UniqueViolation:
        return False
    return True


def enqueue_many(jobs: Sequence[NewJob], *, conn=None) -> list[str]:
    """Insert (or re-queue, for an existing message_id) ``jobs``; returns, in order, the id of
    the job each one became (for a unique key already held: the holder's id).

    Jobs without a unique key take one set-based statement; jobs with one take one statement
    that calls the unique-aware database function per job.
    """
    if not jobs:
        return []
    plain = [j for j in jobs if j.unique_key is None]
    unique = [j for j in jobs if j.unique_key is not None]
    for job in unique:
        if job.unique_on_conflict not in UNIQUE_POLICIES:
            raise ValueError(f"unique_on_conflict must be one of {', '.join(UNIQUE_POLICIES)}, "
                             f"not {job.unique_on_conflict!r}")
        extra = set(job.unique_states or ()) - set(OPTIONAL_UNIQUE_STATES) - {"queued", "running"}
        if extra:
            raise ValueError(f"unique_states: unknown state(s) {', '.join(sorted(extra))}")
    ids: dict[str, str] = {}  # only where the job became another one (a unique key's holder)
    both = plain and unique and conn is None
    with (connection.init_database().atomic() if both else nullcontext()):
        if len(plain) == 1 and plain[0].concurrency_key is None:
            job = plain[0]
            params = {f: getattr(job, f) for f in _PLAIN_FIELDS}
            params["message"] = message_text(job)
            params["delay_ms"] = job.delay_ms or 0
            params["priority"] = job.priority or 0
            execute_prepared("job_insert_one", params, conn=conn)
        elif plain:
            copied = (conn is None and len(plain) >= COPY_THRESHOLD
                      and all(not j.delay_ms and j.concurrency_key is None for j in plain) and _copy_in(plain))
            if not copied:
                execute_prepared("job_insert_many", {"jobs": encode_new_jobs(plain, _PLAIN_FIELDS)}, conn=conn)
        if unique:
            ids.update(_insert_unique(unique, conn=conn))
    return [ids.get(j.message_id, j.message_id) for j in jobs]


def _insert_unique(unique: Sequence[NewJob], *, conn=None) -> dict[str, str]:
    """The id each unique job became. Jobs with the "ignore" policy and no parent (a sweep's
    batch) go in with one set-based statement; the rest, and any the statement could not settle,
    with one database function call each (which also handles the other policies)."""
    simple = [j for j in unique if j.unique_on_conflict == "ignore" and j.parent_id is None]
    with (connection.init_database().atomic() if conn is None else nullcontext()):
        ids = _insert_unique_set(simple) if conn is None and len(simple) > 1 else {}
        # In key order, as the set-based statement inserts: two batches over the same keys take
        # their row locks in one order, so they wait for each other instead of deadlocking.
        rest = sorted((j for j in unique if j.message_id not in ids), key=lambda j: j.unique_key)
        if rest:
            cursor = execute("job_insert_unique_many", {"jobs": encode_new_jobs(rest)}, conn=conn)
            for job, row in zip(rest, cursor.fetchall()):
                ids[job.message_id] = str(row[0])
    return ids


def _insert_unique_set(simple: Sequence[NewJob]) -> dict[str, str]:
    import psycopg2

    numbered = "[" + ",".join('{"n":%d,%s' % (n, entry[1:]) for n, entry in enumerate(
        _json_entries(simple, _UNIQUE_SET_FIELDS))) + "]"
    db = connection.init_database()
    try:
        with db.atomic():  # a savepoint inside the caller's transaction
            found = execute("job_insert_unique_set", {"jobs": numbered}).fetchall()
    except psycopg2.errors.UniqueViolation:  # a message_id inserted by another session meanwhile
        return {}
    return {simple[n].message_id: message_id for n, message_id in found if message_id is not None}


def get(job_id: uuid.UUID | str) -> Job:
    from storage import history  # local: history imports this module's helpers

    found = rows(execute("job_get", {"message_id": str(job_id)}))
    if not found:
        raise JobNotFound(f"no job {job_id}")
    return Job(**found[0], attempts=tuple(history.for_job(job_id)), events=tuple(events_for(job_id)))


def events_for(job_id: uuid.UUID | str) -> list[JobEvent]:
    return [JobEvent(**row) for row in rows(execute("job_events_for_job", {"job_id": str(job_id)}))]


def list_jobs(*, state: str | None = None, actor: str | None = None, queue: str | None = None,
              limit: int = 50) -> list[Job]:
    """The newest jobs of every tenant (the CLI's list): :func:`page`'s first page, which reads
    its indexes in order however long the history is."""
    from storage.tenants import TenantScope

    listed = page(scope=TenantScope.every(), states=[state] if state else STATES, actor=actor, queue=queue,
                  limit=limit)
    return [entry.job for entry in listed]


@dataclass(frozen=True)
class ListedJob:
    job: Job
    listed_at: datetime  # the time the listing orders by: finished_at, or enqueued_at while active


def page(*, scope, states: Sequence[str] = STATES, tenant: str | None = None, actor: str | None = None,
         queue: str | None = None, error: str | None = None, since: datetime | None = None,
         until: datetime | None = None, after: tuple[datetime, str] | None = None,
         limit: int = 50) -> list[ListedJob]:
    """One page of jobs, newest first by their time (finished_at, or enqueued_at for waiting and
    running jobs), after the keyset cursor ``after`` = (listed_at, message_id) of the previous
    page's last job. ``scope`` is a storage.tenants.TenantScope; ``error`` is text an attempt's
    error message contains; ``since`` / ``until`` bound the jobs' time."""
    from storage.tenants import scoped

    pattern = None
    if error is not None:
        pattern = "%" + error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    params = scoped(scope, states=list(states), tenant=tenant, actor=actor, queue=queue, error=pattern,
                    since=since, until=until, after_at=after[0] if after else None,
                    after_id=after[1] if after else None, limit=limit)
    found = rows(execute("job_page", params)) if pattern is None else _page_by_error(params)
    return [ListedJob(job=Job(**{k: v for k, v in row.items() if k != "listed_at"}), listed_at=row["listed_at"])
            for row in found]


# Newest candidates checked against an error text before the history's trigram index is asked:
# first a few pages' worth, then this many.
ERROR_WALK = 1000


def _page_by_error(params: dict) -> list[dict]:
    """A page of jobs with an attempt whose error contains a text. What operators search for is
    mostly an error many recent jobs share: the newest candidates, checked against their history,
    fill the page after a few hundred rows. The trigram index (job_page_by_error) finds every
    match of a rare error at once, but sorting hundreds of thousands of matches of a common one
    took over a second at 10M history rows; it answers when the walk does not fill the page."""
    for walk in sorted({min(params["limit"] * 4, ERROR_WALK), ERROR_WALK}):
        candidates = rows(execute("job_page", {**params, "limit": walk}))
        if not candidates:
            return []
        ids = [str(c["message_id"]) for c in candidates]
        matching = {str(job_id) for (job_id,) in execute("job_ids_with_error", {"ids": ids, "error": params["error"]})}
        hits = [c for c in candidates if str(c["message_id"]) in matching]
        if len(hits) >= params["limit"] or len(candidates) < walk:
            return hits[:params["limit"]]
    return rows(execute("job_page_by_error", params))


def _where(source: str | None) -> dict:
    """An action's event detail: the address it came from, when known (the dashboard's)."""
    return {} if source is None else {"source": source}


def discard(job_id: uuid.UUID | str, *, by: str, source: str | None = None) -> None:
    """A waiting, scheduled or retry-pending job goes to dead without running again."""
    params = {"message_id": str(job_id), "by": by, "detail": json.dumps(_where(source))}
    if execute("job_discard", params).fetchone():
        return
    state = get(job_id).state  # raises JobNotFound
    raise JobStateConflict(f"job {job_id} is {state}; only queued jobs (waiting, scheduled or awaiting a retry) "
                           "can be discarded")


def requeue(job_id: uuid.UUID | str, *, message: dict | None = None, by: str = "unknown",
            detail: dict | None = None) -> None:
    """Redrive a dead, cancelled or completed job (operator retry), recorded as an event.
    ``message`` replaces the job's message (edited arguments); ``detail`` says how."""
    import peewee
    import psycopg2

    params = {"message_id": str(job_id), "message": json.dumps(message) if message is not None else None,
              "by": by, "detail": json.dumps(detail or {})}
    try:
        found = execute("job_requeue", params).fetchone()
    except (peewee.IntegrityError, psycopg2.errors.UniqueViolation):
        raise JobStateConflict(f"job {job_id} cannot be redriven: another job now holds its unique key") from None
    if found is None:
        state = get(job_id).state  # raises JobNotFound
        raise JobStateConflict(f"job {job_id} is {state}; only dead, cancelled or completed jobs can be retried")


def requeue_matching(*, actor: str | None = None, queue: str | None = None, error_type: str | None = None,
                     limit: int = 1000, by: str = "unknown", source: str | None = None) -> list[uuid.UUID]:
    """Bulk redrive of dead jobs matching every given filter; returns the redriven ids."""
    params = {"actor": actor, "queue": queue, "error_type": error_type, "limit": limit, "by": by,
              "detail": json.dumps({"bulk": {"actor": actor, "queue": queue, "error_type": error_type},
                                    **_where(source)})}
    return [row[0] for row in execute("job_requeue_matching", params).fetchall()]


def cancel(job_id: uuid.UUID | str, *, by: str, source: str | None = None) -> str:
    """Cancel a waiting job at once; flag a running one. Returns what happened."""
    params = {"message_id": str(job_id), "by": by, "detail": json.dumps(_where(source))}
    if execute("job_cancel_waiting", params).fetchone():
        return "cancelled"
    if execute("job_cancel_running", params).fetchone():
        return "cancel requested"
    state = get(job_id).state
    raise JobStateConflict(f"job {job_id} is {state}; only queued or running jobs can be cancelled")


def cancel_requested(job_id: uuid.UUID | str, *, conn=None) -> bool:
    """Has an operator asked this (running) job to stop? For actors to poll between steps."""
    found = execute("job_cancel_requested", {"message_id": str(job_id)}, conn=conn).fetchone()
    return bool(found and found[0])


@dataclass(frozen=True)
class PruneBatch:
    jobs: int
    history_rows: int


def prune_batch(*, states: Sequence[str], retention_seconds: float, batch_size: int) -> PruneBatch:
    """Delete one batch (its own short transaction) of jobs in ``states`` finished longer ago
    than the retention, with their history. Their events are audit rows and stay."""
    found = rows(execute("job_prune_finished", {"states": list(states), "retention_seconds": retention_seconds,
                                                "batch_size": batch_size}))
    return PruneBatch(**found[0])


def free_stray_slots(conn) -> int:
    """Free concurrency slots whose holder no longer runs; returns how many."""
    return execute("slot_free_stray", conn=conn).rowcount
