"""Enqueue over Lamplighter's HTTP API with an API token: ``HttpClient(url, token).enqueue(...)``.

The standard library only (urllib). Every call carries an ``Idempotency-Key`` (yours, or a new
random one), so the client can retry a request whose answer was lost (a dropped connection, a
503 while the server restarts) without enqueueing the job twice: the server returns the first
answer for 24 hours.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta

__all__ = ["ApiError", "HttpClient"]

_RETRYABLE = {502, 503, 504}


class ApiError(Exception):
    """The API refused the request: ``status`` (HTTP), ``error`` (its code) and the message."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


class HttpClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http(s)://host[:port], not {url!r}")
        if not isinstance(token, str) or not token.startswith("llt_"):
            raise ValueError("token must be a Lamplighter API token (llt_...)")
        self.url = url.rstrip("/")
        self._token = token
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def __repr__(self) -> str:  # never the token
        return f"HttpClient({self.url!r})"

    def enqueue(self, actor_name, /, *args, queue=None, delay=None, eta=None, priority=None, unique_key=None,
                unique_on_conflict=None, tenant_id=None, correlation_id=None, idempotency_key=None,
                **kwargs) -> str:
        """Enqueue ``actor_name`` with positional ``args`` and/or keyword ``kwargs`` (JSON
        values); the job id. Options as in :func:`lamplighter_client.enqueue` (``delay`` a
        ``timedelta``, ``eta`` a timezone-aware ``datetime``), plus ``unique_on_conflict``."""
        job = job_body(actor_name, args, kwargs, queue=queue, delay=delay, eta=eta, priority=priority,
                       unique_key=unique_key, unique_on_conflict=unique_on_conflict, tenant_id=tenant_id,
                       correlation_id=correlation_id)
        return self._post("/api/jobs", job, idempotency_key)["id"]

    def enqueue_many(self, jobs, *, idempotency_key=None) -> list:
        """Up to 10,000 jobs in one request, all or nothing: each a dict as :func:`job_body`
        builds it (``{"actor": ..., "args": [...], "kwargs": {...}, ...}``); the ids in order."""
        return self._post("/api/jobs/batch", {"jobs": list(jobs)}, idempotency_key)["ids"]

    def job(self, job_id: str) -> dict:
        """One job with its attempts (needs a token with the read scope)."""
        return self._request("GET", f"/api/jobs/{job_id}", None, {})

    def _post(self, path: str, body: dict, idempotency_key: str | None) -> dict:
        return self._request("POST", path, body, {"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def _request(self, method: str, path: str, body, headers: dict) -> dict:
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        headers = {**headers, "Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code in _RETRYABLE and attempt < self.retries:
                    time.sleep(self.backoff * (attempt + 1))
                    continue
                raise _api_error(exc) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                # Safe to send again: a GET reads, and a POST carries its Idempotency-Key.
                if attempt < self.retries:
                    time.sleep(self.backoff * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(exc.read())
        return ApiError(exc.code, str(body.get("error")), str(body.get("message")))
    except (ValueError, AttributeError):
        return ApiError(exc.code, "http_error", exc.reason if isinstance(exc.reason, str) else "")


def job_body(actor_name, args=(), kwargs=None, *, queue=None, delay=None, eta=None, priority=None,
             unique_key=None, unique_on_conflict=None, tenant_id=None, correlation_id=None) -> dict:
    """One job as the API takes it, checked here (TypeError / ValueError) before anything is sent."""
    if not isinstance(actor_name, str) or not actor_name:
        raise TypeError(f"actor_name must be a non-empty string such as 'maintenance.ping', not {actor_name!r}")
    body = {"actor": actor_name, "args": list(args), "kwargs": dict(kwargs or {})}
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"arguments of {actor_name} must be JSON values: {exc}") from None
    if delay is not None and eta is not None:
        raise ValueError("pass delay or eta, not both (delay is relative to now, eta an absolute time)")
    if delay is not None:
        if not isinstance(delay, timedelta):
            raise TypeError(f"delay must be a datetime.timedelta, not {type(delay).__name__}")
        if delay < timedelta(0):
            raise ValueError("delay must not be negative")
        body["delay"] = delay.total_seconds()
    if eta is not None:
        if not isinstance(eta, datetime):
            raise TypeError(f"eta must be a datetime, not {type(eta).__name__}")
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise ValueError("eta must be timezone-aware (e.g. datetime.now(timezone.utc) + ...)")
        body["eta"] = eta.isoformat()
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an integer, not {type(priority).__name__}")
        body["priority"] = priority
    for name, value in (("queue", queue), ("unique_key", unique_key), ("unique_on_conflict", unique_on_conflict),
                        ("tenant_id", tenant_id), ("correlation_id", correlation_id)):
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
            body[name] = value
    return body
