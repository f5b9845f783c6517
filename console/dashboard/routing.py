"""The dashboard's routes answer HTML, not the API's JSON: a route class that turns the
refusals of a page or action into an HTML error page (or, with no session, a redirect to the
sign-in form) before the app's JSON handlers (console/web/errors.py) would see them."""
from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from console.dashboard import render
from console.dashboard.session import SignInRequired, sign_in_redirect
from domain import errors as domain_errors

STATUSES = ((domain_errors.Unauthenticated, 401), (domain_errors.Forbidden, 403), (domain_errors.NotFound, 404),
            (domain_errors.Conflict, 409), (domain_errors.InvalidInput, 422))


def status_of(exc: Exception) -> int | None:
    from scheduler import ticks
    from storage import connection, jobs

    if isinstance(exc, connection.StatementTimeout):
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
                return render.page(request, "error.html", None, status=status, status_code=status,
                                   message=message_of(exc))

        return guarded
