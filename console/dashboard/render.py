"""Jinja2 templates (console/dashboard/templates/, autoescaped) and the filters they use."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from console.dashboard.session import over_tls
from storage.queues import EXACT_UP_TO

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    # Everything is served from here: no CDN, no inline script (the one script is a file).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def figure(figures: Any, name: str) -> str:
    """A count from a queue's figures; "≈" before it when it is the planner's estimate
    (past storage.queues.EXACT_UP_TO), as the title says on hover."""
    value = getattr(figures, name)
    if name in getattr(figures, "estimated", ()):
        return Markup('<span title="estimated: more than {} jobs">≈{}</span>').format(f"{EXACT_UP_TO:,}", value)
    return str(value)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(when=when, age=age, pretty=pretty, figure=figure, ms=lambda v: "-" if v is None else f"{float(v):.1f} ms")


# What an action did, shown once on the page it redirects to: a cookie the action sets and the next
# page clears, not a URL parameter (a link could carry any text into the dashboard's own notice).
NOTICE_COOKIE = "lamplighter_notice"
NOTICE_PATH = "/dashboard"


def set_notice(response, request: Request, message: str) -> None:
    response.set_cookie(NOTICE_COOKIE, quote(message[:500]), max_age=60, path=NOTICE_PATH, httponly=True,
                        samesite="strict", secure=over_tls(request))


def page(request: Request, template: str, who=None, *, status: int = 200, **context) -> HTMLResponse:
    notice = request.cookies.get(NOTICE_COOKIE)
    html = env.get_template(template).render(request=request, who=who,
                                             notice=unquote(notice)[:500] if notice else None, **context)
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if notice is not None:
        response.delete_cookie(NOTICE_COOKIE, path=NOTICE_PATH, httponly=True, samesite="strict")
    return response
