"""Scopes, roles and the one authorization check, shared by the CLI, the HTTP API and the
dashboard.

A scope names what a principal may do; a role is a named set of scopes:

    viewer      read
    operator    read, operate
    enqueue     enqueue (a token may be limited to listed actors or queues)
    superadmin  every scope: read, operate, enqueue, users, tokens, audit, tenants

``read`` shows jobs, queues, schedules and history; ``operate`` retries, redrives, cancels,
pauses and runs schedules now; ``users`` and ``tokens`` manage those; ``audit`` reads the audit
log; ``tenants`` creates tenants and changes their billing status, and only platform principals
(bound to no tenant) ever hold it.

A principal bound to a tenant sees only that tenant's rows: :func:`authorize` answers
:class:`NotFound` (the API's 404) for another tenant's row or a platform row, so their existence
is not revealed, and :func:`tenant_scope` is the scope its queries take. Its tenant's billing
status limits it too (domain/tenants.py): reading needs a status that may read, anything else
one that may write.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from domain import tenants
from domain.errors import Forbidden, InvalidInput, NotFound
from storage.tenants import TenantScope

SCOPES = ("read", "operate", "enqueue", "users", "tokens", "audit", "tenants")
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "operate"}),
    "enqueue": frozenset({"enqueue"}),
    "superadmin": frozenset(SCOPES),
}
PLATFORM_ONLY = frozenset({"tenants"})
_READING = frozenset({"read", "audit"})


@dataclass(frozen=True)
class Principal:
    """Who is acting, as authentication found it (domain/tokens.py, domain/sessions.py,
    domain/users.py) or as the CLI is (a platform superadmin: it holds the database URL)."""

    actor: str  # as the audit log names it: user:<id>, token:<id>, cli:<os user>@<host>, system:<job>
    scopes: frozenset[str]
    tenant_id: str | None = None
    tenant_status: str | None = None  # its tenant's effective billing status
    actors: frozenset[str] | None = None  # enqueue: only these actors (None: any)
    queues: frozenset[str] | None = None  # enqueue: only these queues (None: any)


def scopes_of_role(role: str) -> frozenset[str]:
    try:
        return ROLES[role]
    except KeyError:
        raise InvalidInput(f"unknown role {role!r} (one of {', '.join(ROLES)})") from None


def check_scopes(names: Iterable[str], *, tenant_id: str | None) -> frozenset[str]:
    """Scope names as given (a token's), checked: known, at least one, and no platform-only
    scope for a principal bound to a tenant."""
    chosen = frozenset(names)
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope(s) {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    if not chosen:
        raise InvalidInput("at least one scope is needed")
    if tenant_id is not None and chosen & PLATFORM_ONLY:
        raise InvalidInput(f"scope(s) {', '.join(sorted(chosen & PLATFORM_ONLY))} are for platform principals, "
                           f"not one bound to tenant {tenant_id!r}")
    return chosen


def principal_scopes(scopes: Iterable[str], tenant_id: str | None) -> frozenset[str]:
    """What a principal holds: a tenant-bound one never holds a platform-only scope (a tenant's
    superadmin manages its tenant's users and tokens, not tenants)."""
    held = frozenset(scopes) & frozenset(SCOPES)
    return held - PLATFORM_ONLY if tenant_id is not None else held


def authorize(principal: Principal, scope: str, *, tenant_id: str | None = None, actor: str | None = None,
              queue: str | None = None) -> None:
    """Return if ``principal`` may use ``scope`` on a row or action of ``tenant_id`` (None: a
    platform row or action), else raise.

    Raises :class:`Forbidden` when the scope is not held, when an enqueue's actor or queue is
    outside the principal's limits, or when its tenant's billing status forbids the action; and
    :class:`NotFound` when a tenant-bound principal reaches for another tenant's row or a
    platform one. For ``enqueue`` pass the job's ``actor`` and ``queue``: a limited principal is
    refused when either is missing.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if scope not in principal.scopes:
        raise Forbidden(f"{principal.actor} lacks the {scope!r} scope")
    if principal.tenant_id is not None:
        if tenant_id != principal.tenant_id:
            raise NotFound("not found")
        status = principal.tenant_status or "suspended"
        allowed = tenants.may_read(status) if scope in _READING else tenants.may_write(status)
        if not allowed:
            raise Forbidden(f"tenant {principal.tenant_id!r} is {status}: "
                            f"{'reading' if scope in _READING else 'changes'} not allowed")
    if scope == "enqueue":
        if principal.actors is not None and actor not in principal.actors:
            raise Forbidden(f"{principal.actor} may not enqueue for actor {actor!r}")
        if principal.queues is not None and queue not in principal.queues:
            raise Forbidden(f"{principal.actor} may not enqueue into queue {queue!r}")


def tenant_scope(principal: Principal) -> TenantScope:
    """The rows a principal's queries may see: its tenant's, or every tenant's for a platform
    principal."""
    if principal.tenant_id is not None:
        return TenantScope.of(principal.tenant_id)
    return TenantScope.every()


def is_superadmin(principal: Principal) -> bool:
    """A platform superadmin: bound to no tenant and holding every scope."""
    return principal.tenant_id is None and principal.scopes >= ROLES["superadmin"]


def authorize_superadmin(principal: Principal) -> None:
    """Return if ``principal`` is a platform superadmin (what every tenant's figures need), else
    raise Forbidden."""
    if not is_superadmin(principal):
        raise Forbidden(f"{principal.actor} is not a platform superadmin")
