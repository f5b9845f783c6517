"""Sign in and sign out (console/dashboard/session.py says how the session and CSRF work)."""
from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from console.dashboard import render
from console.dashboard.routing import DashboardRoute
from console.dashboard.session import (COOKIE, PATH, check_csrf, clear_cookie, safe_next, set_cookie, source,
                                       visitor)
from domain import sessions, sign_in_limits, users
from domain.errors import Unauthenticated

router = APIRouter(prefix=PATH, route_class=DashboardRoute, include_in_schema=False)


@router.get("/login")
async def login_form(request: Request, next: str = ""):
    return render.page(request, "login.html", next=safe_next(next), email="", message=None)


@router.post("/login")
async def login(request: Request, email: str = Form(default="", max_length=200),
                password: str = Form(default="", max_length=1024), next: str = Form(default="", max_length=2000)):
    where = source(request)

    def attempt():
        sign_in_limits.check(email, source=where)
        user = users.sign_in(email, password, source=where)
        return sessions.start(user, source=where)

    try:
        started = await request.app.state.pool.run(attempt)
    except sign_in_limits.TooManyAttempts as exc:
        return render.page(request, "login.html", status=429, next=safe_next(next), email=email, message=str(exc))
    except Unauthenticated as exc:
        return render.page(request, "login.html", status=401, next=safe_next(next), email=email, message=str(exc))
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(response, request, started)
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form(default="", max_length=200)):
    who = await visitor(request)
    check_csrf(request, who, csrf)
    session_id = request.cookies.get(COOKIE, "")

    def end():
        from domain import audit

        if sessions.end(session_id):
            audit.record(who.actor, "user.signed_out", target_type="user", target_id=who.actor.split(":", 1)[1],
                         tenant_id=who.principal.tenant_id, source=source(request))

    await request.app.state.pool.run(end)
    response = RedirectResponse(f"{PATH}/login", status_code=303)
    clear_cookie(response, request)
    return response
