"""`lamplighter tokens create|list|revoke`: API tokens. The rules are domain/tokens.py's. A new
token is printed once, alone on stdout (so `TOKEN=$(lamplighter tokens create ...)` captures it),
and kept only as a hash; listings show its first characters."""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from datetime import datetime

from console import cli


def register(verbs) -> None:
    from domain.scopes import ROLES, SCOPES

    t = verbs.add_parser("tokens", help="API tokens: create (shown once), list, revoke")
    actions = t.add_subparsers(dest="tokens_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    c = actions.add_parser("create", help="create a token and print it once")
    c.add_argument("--name", required=True, help="what the token is for")
    grant = c.add_mutually_exclusive_group(required=True)
    grant.add_argument("--role", choices=tuple(ROLES), help="the role's scopes")
    grant.add_argument("--scope", dest="scopes", action="append", choices=SCOPES, help="a scope (repeatable)")
    c.add_argument("--tenant", type=cli.tenant_id, help="bind the token to this tenant (none: platform)")
    expiry = c.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=cli.duration, help="lifetime, e.g. 90d, 12h")
    expiry.add_argument("--expires-at", type=cli.instant, help="expiry instant (ISO 8601)")
    c.add_argument("--actor", dest="actors", action="append", help="enqueue only for this actor (repeatable)")
    c.add_argument("--queue", dest="queues", action="append", type=cli.queue_name,
                   help="enqueue only into this queue (repeatable)")
    c.add_argument("--owner", help="who is told when it expires (default: you)")
    c.set_defaults(run=cmd_tokens_create)
    ls = actions.add_parser("list", help="tokens, oldest first (never the token itself)")
    ls.add_argument("--tenant", type=cli.tenant_id, help="only this tenant's tokens")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_tokens_list)
    r = actions.add_parser("revoke", help="revoke a token: refused from its next use")
    r.add_argument("token_id", metavar="ID", type=cli.positive_int)
    r.set_defaults(run=cmd_tokens_revoke)


@dataclass(frozen=True)
class TokenRow:
    """A token as `tokens list` shows it: never the token, only its first characters."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    limits: str | None  # "actors: a,b; queues: q" for a limited enqueue token
    tenant: str | None
    owner: str
    state: str  # active | expired | revoked
    expires: datetime | None
    last_used: datetime | None
    created: datetime


COLUMNS = [f.name for f in fields(TokenRow)]


def token_row(token, now: datetime) -> TokenRow:
    state = ("revoked" if token.revoked_at is not None else
             "expired" if token.expires_at is not None and token.expires_at <= now else "active")
    limits = "; ".join(f"{what}: {','.join(names)}" for what, names in (("actors", token.actors),
                                                                          ("queues", token.queues)) if names)
    return TokenRow(id=token.id, name=token.name, prefix=token.display_prefix + "...", scopes=token.scopes,
                    limits=limits or None, tenant=token.tenant_id, owner=token.owner, state=state,
                    expires=token.expires_at, last_used=token.last_used_at, created=token.created_at)


def token_rows(now: datetime, *, tenant: str | None = None) -> list[TokenRow]:
    from domain import tokens
    from storage.tenants import TenantScope

    scope = TenantScope.of(tenant) if tenant else TenantScope.every()
    return [token_row(t, now) for t in tokens.list_tokens(scope=scope)]


def cmd_tokens_create(args, settings) -> int:
    from domain import scopes, tokens

    scope_names = scopes.scopes_of_role(args.role) if args.role else args.scopes
    issued = tokens.create_token(name=args.name, scope_names=scope_names, tenant_id=args.tenant,
                                 expires_at=args.expires_at, expires_in=args.expires_in, actors=args.actors,
                                 queues=args.queues, owner=args.owner, by=cli.operator())
    token = issued.token
    print(f"token {token.id} ({token.name}) created, scopes {','.join(token.scopes)}"
          + (f", tenant {token.tenant_id}" if token.tenant_id else "")
          + (f", expires {token.expires_at.isoformat(timespec='seconds')}" if token.expires_at else ", no expiry")
          + ". It is shown once, below; only its hash is kept.", file=sys.stderr)
    print(issued.secret)
    return 0


def cmd_tokens_list(args, settings) -> int:
    from storage.clock import SystemClock

    cli.print_rows(token_rows(SystemClock(settings.clock_offset).now(), tenant=args.tenant), COLUMNS,
                   as_json=args.json)
    return 0


def cmd_tokens_revoke(args, settings) -> int:
    from domain import tokens
    from storage.tenants import TenantScope

    token = tokens.revoke_token(args.token_id, scope=TenantScope.every(), by=cli.operator())
    print(f"token {token.id} ({token.name}) revoked at {token.revoked_at.isoformat(timespec='seconds')}")
    return 0
