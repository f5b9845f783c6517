"""Every error the web process answers is JSON ``{"error": code, "message": ...}``: the domain's
refusals (domain/errors.py) mapped once here, FastAPI's validation errors, unknown routes and
methods, bodies over the limit (413, before anything parses them) and failures of the database.
Also the access log: one structlog event per request."""
from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from console.web.pool import CONNECTION_ERRORS, PoolExhausted
from domain import errors as domain_errors
from domain.idempotency import KeyReused
from storage import connection

log = structlog.get_logger("lamplighter.web")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def error_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}


def responses(*statuses: int) -> dict[int, dict]:
    reasons = {400: "Malformed request", 401: "No valid API token", 403: "The token lacks the scope",
               404: "Not found (or another tenant's)", 405: "Method not allowed", 409: "Conflicts with the current state",
               413: "Request body too large", 422: "Invalid request", 503: "Database unavailable or busy"}
    return {s: {"description": reasons[s], "content": {"application/json": {"schema": error_schema()}}}
            for s in statuses}


_STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 503: "unavailable"}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        if error.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON (at position {error.get('loc', ('', '?'))[-1]})")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error body."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type and any(
                tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
            return error_response(422, "invalid_request", "the body must be JSON, sent with "
                                                          "Content-Type: application/json")
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's answer to a body it cannot decode (not UTF-8, say)
            return error_response(422, "invalid_request", "the body could not be read as JSON")
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(domain_errors.DomainError)
    async def domain_error(request: Request, exc: domain_errors.DomainError):
        return error_response(*_domain_status(exc), str(exc) or type(exc).__name__)

    from scheduler import ticks
    from storage import jobs

    for error_type, status, code in ((jobs.JobNotFound, 404, "not_found"), (ticks.ScheduleNotFound, 404, "not_found"),
                                     (jobs.JobStateConflict, 409, "conflict"), (ticks.ScheduleDisabled, 409, "conflict")):
        app.add_exception_handler(error_type, _fixed(status, code))

    @app.exception_handler(connection.StatementTimeout)
    async def timed_out(request: Request, exc: connection.StatementTimeout):
        log.warning("http_statement_timeout", path=request.url.path)
        return error_response(503, "statement_timeout", str(exc))

    @app.exception_handler(PoolExhausted)
    async def busy(request: Request, exc: PoolExhausted):
        return error_response(503, "busy", "every database connection is busy; retry shortly",
                              {"Retry-After": "1"})

    for error_type in CONNECTION_ERRORS:
        app.add_exception_handler(error_type, _database_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("http_unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return error_response(500, "internal_error", "internal error (logged)")


def _fixed(status: int, code: str):
    async def handler(request: Request, exc: Exception):
        return error_response(status, code, str(exc.args[0]) if exc.args else code)

    return handler


async def _database_unavailable(request: Request, exc: Exception):
    log.warning("http_database_unavailable", path=request.url.path, error_type=type(exc).__name__)
    return error_response(503, "database_unavailable", "database unavailable; retry shortly", {"Retry-After": "1"})


def _domain_status(exc: domain_errors.DomainError) -> tuple[int, str]:
    if isinstance(exc, KeyReused):
        return 422, "idempotency_key_reused"
    if isinstance(exc, domain_errors.Unauthenticated):
        return 401, "unauthenticated"
    if isinstance(exc, domain_errors.Forbidden):
        return 403, "forbidden"
    if isinstance(exc, domain_errors.NotFound):
        return 404, "not_found"
    if isinstance(exc, domain_errors.Conflict):
        return 409, "conflict"
    if isinstance(exc, domain_errors.InvalidInput):
        return 422, "invalid_input"
    return 409, "refused"


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413 — from its Content-Length
    before any of it is read, or as soon as a chunked body passes the limit."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, "body_too_large",
                                      f"request body over {self.max_bytes} bytes (LAMPLIGHTER_WEB_MAX_BODY_BYTES)")
            return await response(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, f"request body over {self.max_bytes} bytes "
                                                      "(LAMPLIGHTER_WEB_MAX_BODY_BYTES)")
            return message

        await self.app(scope, limited, send)


class RefuseNul:
    """ASGI middleware: a NUL character in the path or the query string (``%00``) gets a 422
    before any route sees it. PostgreSQL's text cannot hold one: a filter that passed it on made
    psycopg2 raise ValueError, a 500, on every route that queries by a string parameter."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (b"%00" in scope.get("query_string", b"") or "\x00" in scope["path"]):
            response = error_response(422, "invalid_request", "the path and query must not contain a NUL "
                                                              "character (%00)")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


QUIET_PATHS = frozenset({"/healthz", "/readyz"})


class AccessLog:
    """ASGI middleware: one ``http_request`` event per request (method, path without the query,
    status, duration), through structlog like every other line; uvicorn's own access log is off."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def recording(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            client = scope.get("client")
            # Load balancers probe health several times a second: those lines only at DEBUG.
            emit = log.debug if scope["path"] in QUIET_PATHS and status["code"] < 400 else log.info
            emit("http_request", method=scope["method"], path=scope["path"], status=status["code"],
                 duration_ms=round((time.perf_counter() - started) * 1000, 2), client=client[0] if client else None)
