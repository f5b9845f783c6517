"""dramatiq's rate limiters and barriers on PostgreSQL, and declarative window limits on actors.

* :class:`PostgresBackend` — a :class:`dramatiq.rate_limits.RateLimiterBackend`: dramatiq's
  ``ConcurrentRateLimiter``, ``WindowRateLimiter``, ``BucketRateLimiter`` and ``Barrier`` run on
  it unchanged. Keys live in lamplighter.rate_limits (migration 0017 says why a logged table);
  TTLs are counted by the database clock (``lamplighter.now()``), expired keys count as absent
  and :func:`prune` deletes them. ``wait`` / ``wait_notify`` go over LISTEN/NOTIFY
  (storage/listener.py), never a polling loop.
* :class:`RateLimit` + :class:`RateLimits` — ``rate_limit=RateLimit(key="provider:{provider}",
  limit=10, window=1)`` on an actor: at most ``limit`` starts per key in any ``window`` seconds. A
  job over its limit goes back to the queue until its reserved time (no attempt used, no worker
  thread waiting).
"""
from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import psycopg2
import structlog
from dramatiq.middleware import Middleware, MiddlewareError, SkipMessage
from dramatiq.rate_limits import RateLimiterBackend

from storage import connection, listener
from storage import queries as query_module
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.rate_limits")
CONCERN = "rate_limits"
RATE_LIMIT_CHANNEL = "lamplighter.rate_limits"
# A declarative limit's window is widened by this much: the worker records a start a little
# after the database granted it, and the history's starts must still hold to the limit.
START_MARGIN_MS = 25


class PostgresBackend(RateLimiterBackend):
    """dramatiq's rate limiter backend on lamplighter.rate_limits. One autocommit connection per
    thread (synchronous_commit off: see migration 0017); a lost connection is opened again once
    per call."""

    def __init__(self):
        self._local = threading.local()

    # ---- connection --------------------------------------------------------------------

    def _connection(self):
        url = connection.database_url()
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or self._local.url != url):
            conn.close()
            conn = None
        if conn is None:
            conn = connection.raw_connection("rate-limits")
            conn.autocommit = True
            conn.cursor().execute("SET synchronous_commit = off")
            self._local.conn, self._local.url = conn, url
        return conn

    def _run(self, name: str, params: dict):
        for tries in (1, 2):
            conn = self._connection()
            try:
                return query_module.execute(conn.cursor(), CONCERN, name, params,
                                            prepare=settings_module.get().prepared_statements)
            except (psycopg2.OperationalError, psycopg2.InterfaceError, query_module.StalePreparedStatement):
                conn.close()
                if tries == 2:
                    raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- dramatiq's interface ----------------------------------------------------------

    def add(self, key, value, ttl):
        return self._run("rate_limit_add", {"key": key, "value": value, "ttl": ttl}).fetchone() is not None

    def incr(self, key, amount, maximum, ttl):
        return self._change(key, amount, -(2 ** 62), maximum, ttl)

    def decr(self, key, amount, minimum, ttl):
        return self._change(key, -amount, minimum, 2 ** 62, ttl)

    def _change(self, key, amount, minimum, maximum, ttl) -> bool:
        return self._run("rate_limit_change", {"key": key, "amount": amount, "minimum": minimum,
                                               "maximum": maximum, "ttl": ttl}).fetchone() is not None

    def incr_and_sum(self, key, keys, amount, maximum, ttl):
        key_list = list(keys() if callable(keys) else keys)
        return bool(self._run("rate_limit_incr_and_sum", {"key": key, "keys": key_list, "amount": amount,
                                                          "maximum": maximum, "ttl": ttl}).fetchone()[0])

    def wait(self, key, timeout):
        return self.wait_many([key], timeout) is not None

    def wait_many(self, keys: Iterable[str], timeout: int | None) -> str | None:
        """Until one of ``keys`` has an event (wait_notify) or ``timeout`` ms pass: that key, or
        None. An event stays for its TTL, so a waiter that comes after it returns at once."""
        keys = list(keys)
        deadline = time.monotonic() + (timeout if timeout is not None else 10_000) / 1000
        with listener.get().watching(RATE_LIMIT_CHANNEL, keys) as event:
            while True:
                event.clear()
                found = [row[0] for row in self._run("rate_limit_events", {"keys": keys}).fetchall()]
                if found:
                    return next(k for k in keys if k in found)
                left = deadline - time.monotonic()
                if left <= 0 or not event.wait(left):
                    return None

    def wait_notify(self, key, ttl):
        self._run("rate_limit_notify", {"key": key, "ttl": ttl}).fetchall()

    # ---- declarative limits ------------------------------------------------------------

    def take(self, key: str, limit: int, window_ms: int, job_id: str) -> int:
        """0 if ``job_id`` may start now under ``limit`` starts per ``window_ms`` on ``key``;
        else the milliseconds until the time reserved for it."""
        return int(self._run("rate_limit_take", {"key": key, "limit": limit, "window_ms": window_ms,
                                                 "margin_ms": START_MARGIN_MS, "job_id": job_id}).fetchone()[0])


def prune(batch_size: int) -> int:
    """Delete one batch of expired keys; returns how many."""
    return query_module.run(query_module.queries(CONCERN), "rate_limit_prune", {"batch_size": batch_size}).rowcount


def prune_group_members(retention_seconds: int, batch_size: int) -> int:
    return query_module.run(query_module.queries(CONCERN), "group_members_prune",
                            {"retention_seconds": retention_seconds, "batch_size": batch_size}).rowcount


# ---- declarative window limits -------------------------------------------------------------


class RateLimitError(ValueError, MiddlewareError):
    """A bad ``rate_limit=`` on an actor declaration (a MiddlewareError: dramatiq swallows others)."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` starts in any ``window`` seconds per ``key``. ``key`` may name the
    actor's arguments (``"provider:{provider}"``) or be a function of them; it defaults to the
    actor's name. For "at most N at once", use ``concurrency_key`` / ``concurrency_limit``."""

    limit: int
    window: float = 1.0
    key: str | Callable[..., str] | None = None

    def key_for(self, actor_name: str, fn, args: tuple, kwargs: dict) -> str:
        if self.key is None:
            return actor_name
        if callable(self.key):
            return f"{actor_name}:{self.key(*args, **kwargs)}"
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        return self.key.format(**bound.arguments)


class RateLimits(Middleware):
    """Applies ``rate_limit=`` before an attempt starts. It must come before the broker's own
    bookkeeping (it does, in actors/__init__.py's list): a job sent back here has not started."""

    def __init__(self, backend: PostgresBackend | None = None):
        self.backend = backend or PostgresBackend()

    @property
    def actor_options(self):
        return {"rate_limit"}

    def before_declare_actor(self, broker, actor):
        limit = actor.options.get("rate_limit")
        if limit is None:
            return
        if (not isinstance(limit, RateLimit) or not isinstance(limit.limit, int) or limit.limit < 1
                or not isinstance(limit.window, (int, float)) or limit.window <= 0):
            raise RateLimitError(f"{actor.actor_name}: rate_limit must be RateLimit(limit=N >= 1, window=seconds > 0)")

    def before_process_message(self, broker, message):
        actor = broker.actors.get(message.actor_name)
        limit = actor.options.get("rate_limit") if actor is not None else None
        if limit is None:
            return
        key = limit.key_for(actor.actor_name, actor.fn, tuple(message.args), dict(message.kwargs))
        wait_ms = self.backend.take(key, limit.limit, int(limit.window * 1000), message.message_id)
        if wait_ms > 0 and broker.postpone(message, wait_ms):
            message.rate_limited = True  # storage/logs.py drops dramatiq's "was skipped" warning
            log.info("job_rate_limited", job_id=message.message_id, actor=actor.actor_name, key=key,
                     retry_in_ms=wait_ms)
            raise SkipMessage(f"rate limit {key!r}: back in {wait_ms} ms")
