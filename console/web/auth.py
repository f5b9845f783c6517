"""Bearer API tokens (domain/tokens.py) for every /api route: ``Authorization: Bearer llt_...``.

No token, or one that is unknown, revoked or expired → 401; a token without the route's scope →
403 (domain/scopes.py). Which rows a token sees, and a tenant-bound token reaching for another
tenant's job (404), is decided per row with ``scopes.authorize`` in the route.
"""
from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from console.web.errors import ApiError
from domain import scopes, tokens
from domain.errors import Unauthenticated
from domain.scopes import Principal

bearer = HTTPBearer(auto_error=False, description="An API token (`lamplighter tokens create`): llt_...")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lamplighter"'}


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def principal(request: Request,
                    credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The principal the request's Bearer token stands for."""
    if credentials is None:
        raise ApiError(401, "unauthenticated", "an API token is required: Authorization: Bearer llt_...", _CHALLENGE)
    try:
        return await request.app.state.pool.run(tokens.authenticate, credentials.credentials,
                                                source=client_address(request))
    except Unauthenticated as exc:
        raise ApiError(401, "unauthenticated", str(exc), _CHALLENGE) from None


def holding(scope: str):
    """A dependency: the principal, which must hold ``scope`` (403 otherwise)."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if scope not in who.scopes:
            raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope")
        return who

    return check


async def superadmin(who: Principal = Depends(principal)) -> Principal:
    """A dependency: the principal, which must be a platform superadmin (403 otherwise)."""
    scopes.authorize_superadmin(who)
    return who
