"""The dashboard's routes answer HTML, not the API's JSON: a route class that turns the
refusals of a page or action into an HTML error page (or, with no session, a redirect to the
sign-in form) before the app's JSON handlers (console/web/errors.py) would see them."""
from __future__ import annotations

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from console.dashboard import render
from console.dashboard.session import SignInRequired, sign_in_redirect
from domain import errors as domain_errors

log = structlog.get_logger("lamplighter.web")
STATUSES = ((domain_errors.Unauthenticated, 401), (domain_errors.Forbidden, 403), (domain_errors.NotFound, 404),
            (domain_errors.Conflict, 409), (domain_errors.InvalidInput, 422))


DATABASE_UNAVAILABLE = "database unavailable; retry shortly"


def _unavailable(exc: Exception) -> bool:
    """The database could not be reached or every pool connection stayed busy (the API's 503s)."""
    from console.web.pool import CONNECTION_ERRORS, PoolExhausted

    return isinstance(exc, (*CONNECTION_ERRORS, PoolExhausted))


def status_of(exc: Exception) -> int | None:
    from scheduler import ticks
    from storage import connection, jobs

    if isinstance(exc, connection.StatementTimeout) or _unavailable(exc):
        return 503
    if isinstance(exc, (jobs.JobNotFound, ticks.ScheduleNotFound)):
        return 404
    if isinstance(exc, (jobs.JobStateConflict, ticks.ScheduleDisabled)):
        return 409
    if isinstance(exc, domain_errors.DomainError):
        return next((status for kind, status in STATUSES if isinstance(exc, kind)), 409)
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    return None


def message_of(exc: Exception) -> str:
    if _unavailable(exc):  # never the driver's text: it names the host, user and database
        return DATABASE_UNAVAILABLE
    if isinstance(exc, RequestValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'form'}: {e.get('msg')}"
                         for e in exc.errors()[:5])
    if isinstance(exc, StarletteHTTPException):
        return str(exc.detail)
    return str(exc.args[0]) if exc.args else type(exc).__name__


class DashboardRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request: Request):
            try:
                return await handler(request)
            except SignInRequired as exc:
                return RedirectResponse(sign_in_redirect(exc.next_path), status_code=303)
            except Exception as exc:
                status = status_of(exc)
                if status is None:
                    raise
                if _unavailable(exc):
                    log.warning("http_database_unavailable", path=request.url.path, error_type=type(exc).__name__)
                return render.page(request, "error.html", None, status=status, status_code=status,
                                   message=message_of(exc))

        return guarded
