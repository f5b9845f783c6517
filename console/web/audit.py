"""`GET /api/audit`: the audit log, newest first (domain/audit.py), for tokens with the ``audit``
scope; a token bound to a tenant reads that tenant's rows only."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from console.web.auth import holding
from console.web.errors import ApiError, responses
from domain import audit, scopes
from domain.scopes import Principal
from storage.tenants import TenantScope

router = APIRouter(prefix="/api", tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    tenant_id: str | None
    source_address: str | None
    details: dict[str, Any]


@router.get("/audit", response_model=list[AuditEntry], summary="The audit log, newest first",
            responses=responses(401, 403, 404, 422, 503))
async def audit_log(request: Request, who: Principal = Depends(holding("audit")),
                    actor: str | None = Query(default=None, min_length=1, max_length=200,
                                              description="e.g. token:7, user:3"),
                    action: str | None = Query(default=None, min_length=1, max_length=200,
                                               description="exact, or a prefix ending in '*': job.*"),
                    tenant: str | None = Query(default=None, min_length=1, max_length=63),
                    since: datetime | None = None,
                    limit: int = Query(default=100, ge=1, le=1000)):
    if since is not None and since.tzinfo is None:
        raise ApiError(422, "invalid_request", "since: give a time zone (e.g. 2026-12-06T09:00:00Z)")
    if who.tenant_id is not None:
        scopes.authorize(who, "audit", tenant_id=tenant or who.tenant_id)  # another tenant's: 404
        scope = scopes.tenant_scope(who)
    else:
        scope = TenantScope.of(tenant) if tenant else TenantScope.every()
    entries = await request.app.state.pool.run(audit.entries, scope=scope, actor=actor, action=action, since=since,
                                               limit=limit)
    return [vars(e) for e in entries]
