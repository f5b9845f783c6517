"""Enqueue Lamplighter jobs from a service that has neither the actors nor dramatiq installed.

``enqueue(conn, "maintenance.ping", note="hi")`` calls the SQL function ``lamplighter.enqueue``
on the caller's own connection (psycopg 3 or psycopg2; only ``cursor()``, ``execute()`` and
``fetchone()`` are used), so the job joins the caller's transaction: workers see it at COMMIT,
and a ROLLBACK drops it. Arguments are checked here, before anything reaches the connection, and
refused with ``TypeError``/``ValueError``; what only the database can check (an actor no worker
has registered, a role without the ``lamplighter_enqueue`` grant) raises the driver's own error.

``HttpClient(url, token).enqueue("maintenance.ping", note="hi")`` does the same over the HTTP
API with an API token, for services that cannot reach the database (lamplighter_client/http.py).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from lamplighter_client.http import ApiError, HttpClient, job_body

__all__ = ["ApiError", "HttpClient", "enqueue", "job_body"]

# Option -> the SQL function's parameter and its type. Only options given are sent, by name, so a
# call that uses none of the newer ones also works against a database migrated before they came.
_OPTIONS = {
    "queue": "text",
    "delay": "interval",
    "priority": "integer",
    "unique_key": "text",
    "tenant_id": "text",
    "correlation_id": "text",
    "eta": "timestamptz",
}


def enqueue(conn, actor_name, /, *args, queue=None, delay=None, eta=None, priority=None,
            unique_key=None, tenant_id=None, correlation_id=None, **kwargs) -> str:
    """Enqueue ``actor_name`` with positional ``args`` or keyword ``kwargs`` (JSON values; not
    both: the SQL function takes one or the other). Returns the job id as a string.

    ``delay`` is a ``timedelta`` from now, ``eta`` a timezone-aware ``datetime`` (one or the
    other); ``queue`` and ``priority`` default to the actor's. ``unique_key``: while a job with
    the key waits or runs, the existing job's id is returned instead of a new job. An actor
    keyword argument named like one of these options cannot be passed here.
    """
    if not isinstance(actor_name, str) or not actor_name:
        raise TypeError(f"actor_name must be a non-empty string such as 'maintenance.ping', not {actor_name!r}")
    if args and kwargs:
        raise ValueError("pass positional or keyword arguments, not both: lamplighter.enqueue() "
                         "takes a JSON array or a JSON object")
    try:
        arguments = json.dumps(dict(kwargs) if kwargs else list(args), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"arguments of {actor_name} must be JSON values: {exc}") from None
    values = {
        "queue": _text("queue", queue),
        "delay": _delay(delay),
        "priority": _priority(priority),
        "unique_key": _text("unique_key", unique_key),
        "tenant_id": _text("tenant_id", tenant_id),
        "correlation_id": _text("correlation_id", correlation_id),
        "eta": _eta(eta),
    }
    if delay is not None and eta is not None:
        raise ValueError("pass delay or eta, not both (delay is relative to now, eta an absolute time)")
    given = [(name, value) for name, value in values.items() if value is not None]
    named = "".join(f", {name} => %s::{_OPTIONS[name]}" for name, _ in given)
    cur = conn.cursor()
    cur.execute(f"SELECT lamplighter.enqueue(%s::text, %s::jsonb{named}) AS job_id",
                (actor_name, arguments, *(value for _, value in given)))
    row = cur.fetchone()
    job_id = row["job_id"] if isinstance(row, Mapping) else row[0]
    return str(job_id)


def _text(name, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return value


def _priority(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"priority must be an integer, not {type(value).__name__}")
    return value


def _delay(value):
    if value is None:
        return None
    if not isinstance(value, timedelta):
        # dramatiq's delay= is in milliseconds, Python's sleep in seconds: a bare number is a guess.
        raise TypeError("delay must be a datetime.timedelta, e.g. timedelta(minutes=5), "
                        f"not {type(value).__name__}")
    if value < timedelta(0):
        raise ValueError("delay must not be negative")
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return f"{micros} microseconds"


def _eta(value):
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"eta must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("eta must be timezone-aware (e.g. datetime.now(timezone.utc) + ...): "
                         "a naive time would be read in the database session's time zone")
    return value.isoformat()
