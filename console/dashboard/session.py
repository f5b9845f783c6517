"""The dashboard's sign-in: users of domain/users.py (argon2id), sessions in the database
(domain/sessions.py), the sign-in rate limit (domain/sign_in_limits.py), and a CSRF token per
session on every form that changes something.

The session id lives only in the ``lamplighter_session`` cookie: HttpOnly, SameSite=Lax, Path
/dashboard, and Secure when the request came over TLS (directly, or ``X-Forwarded-Proto: https``
from the platform's router). The CSRF token is an HMAC of the session id: a page carries it in a
hidden field, and an action whose field does not match its session's is refused (403).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request

from console.web.auth import client_address
from domain import scopes, sessions
from domain.errors import Forbidden, Unauthenticated
from domain.scopes import Principal

COOKIE = "lamplighter_session"
PATH = "/dashboard"


class SignInRequired(Exception):
    """No live session: pages redirect to the sign-in form."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Visitor:
    """A signed-in user on a dashboard page."""

    principal: Principal
    csrf: str
    role: str

    @property
    def actor(self) -> str:
        return self.principal.actor

    def may(self, scope: str) -> bool:
        return scope in self.principal.scopes

    @property
    def platform(self) -> bool:
        return self.principal.tenant_id is None


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"lamplighter dashboard csrf", hashlib.sha256).hexdigest()


def over_tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def role_of(principal: Principal) -> str:
    for name in ("superadmin", "operator", "viewer"):
        if principal.scopes >= scopes.principal_scopes(scopes.ROLES[name], principal.tenant_id):
            return name
    return "none"


async def visitor(request: Request) -> Visitor:
    """A dependency: the signed-in user (SignInRequired otherwise), who must hold ``read``."""
    session_id = request.cookies.get(COOKIE)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = PATH + "/"  # back to a page after signing in, never to a form's action
    if not session_id:
        raise SignInRequired(target)
    try:
        principal = await request.app.state.pool.run(sessions.resolve, session_id)
    except Unauthenticated:
        raise SignInRequired(target) from None
    if "read" not in principal.scopes:
        raise Forbidden(f"{principal.actor} lacks the 'read' scope the dashboard needs")
    return Visitor(principal=principal, csrf=csrf_token(session_id), role=role_of(principal))


def check_csrf(request: Request, who: Visitor, submitted: str | None) -> None:
    """Refuse (403) a form whose CSRF field is missing or is not this session's."""
    if not submitted or not hmac.compare_digest(submitted, who.csrf):
        raise Forbidden("the form's CSRF token is missing or does not match your session; reload the page")


def sign_in_redirect(next_path: str) -> str:
    return f"{PATH}/login?next={quote(next_path, safe='')}"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if value and value.startswith(PATH + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PATH + "/"


def set_cookie(response, request: Request, started: sessions.StartedSession) -> None:
    max_age = int(sessions.LIFETIME.total_seconds())
    response.set_cookie(COOKIE, started.session_id, max_age=max_age, path=PATH, httponly=True, samesite="lax",
                        secure=over_tls(request))


def clear_cookie(response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="lax", secure=over_tls(request))


def source(request: Request) -> str | None:
    return client_address(request)
