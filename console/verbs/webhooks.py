"""`lamplighter webhooks add|list|rotate-secret|enable|deliveries`: a tenant's signed webhook
endpoints (domain/webhooks.py). A secret is printed once, alone on stdout, when it is made."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from console import cli

COLUMNS = ["id", "tenant", "origin", "events", "enabled", "disabled_reason", "rotating_until"]
DELIVERY_COLUMNS = ["id", "tenant", "event_id", "event_type", "endpoint_id", "status", "attempts", "response_code",
                    "next_attempt_at", "last_error"]


def register(verbs) -> None:
    w = verbs.add_parser("webhooks", help="signed webhook endpoints and their deliveries")
    actions = w.add_subparsers(dest="webhooks_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    a = actions.add_parser("add", help="a new endpoint; prints its secret once")
    a.add_argument("tenant_id", metavar="TENANT", type=cli.tenant_id)
    a.add_argument("url", metavar="URL")
    a.add_argument("--event", dest="events", action="append", default=[], help="an event type it takes (repeat); "
                   "none: every event")
    a.add_argument("--legacy-signature", action="store_true", help="also send X-Webhook-Signature: sha256=<hex>")
    a.set_defaults(run=cmd_add)
    ls = actions.add_parser("list", help="endpoints (origin only: a hook's path can be its secret)")
    ls.add_argument("--tenant", type=cli.tenant_id, default=None)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_list)
    r = actions.add_parser("rotate-secret", help="a new secret; the old one signs beside it for 24 h")
    r.add_argument("tenant_id", metavar="TENANT", type=cli.tenant_id)
    r.add_argument("id", metavar="ID", type=cli.positive_int)
    r.set_defaults(run=cmd_rotate)
    e = actions.add_parser("enable", help="enable an endpoint that was disabled")
    e.add_argument("tenant_id", metavar="TENANT", type=cli.tenant_id)
    e.add_argument("id", metavar="ID", type=cli.positive_int)
    e.set_defaults(run=cmd_enable)
    d = actions.add_parser("deliveries", help="deliveries, newest first")
    d.add_argument("--tenant", type=cli.tenant_id, default=None)
    d.add_argument("--status", choices=("pending", "delivered", "failed", "cancelled"), default=None)
    d.add_argument("--limit", type=cli.positive_int, default=50)
    d.add_argument("--json", action="store_true")
    d.set_defaults(run=cmd_deliveries)


@dataclass(frozen=True)
class EndpointRow:
    id: int
    tenant: str
    origin: str
    events: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    rotating_until: datetime | None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def endpoint_rows(tenant_id: str | None) -> list[EndpointRow]:
    from domain import webhooks

    return [EndpointRow(id=e.id, tenant=e.tenant_id, origin=origin(e.url), events=e.event_types or ("*",),
                        enabled=e.enabled, disabled_reason=e.disabled_reason, rotating_until=e.rotating_until)
            for e in webhooks.list_endpoints(tenant_id)]


def cmd_add(args, settings) -> int:
    from domain import webhooks

    endpoint, secret = webhooks.add_endpoint(args.tenant_id, args.url, event_types=args.events,
                                             legacy_signature=args.legacy_signature, by=cli.operator())
    print(f"webhook endpoint {endpoint.id} of {endpoint.tenant_id} added ({origin(endpoint.url)}). Its signing secret "
          "is shown once, below; only an encrypted copy is kept.", file=sys.stderr)
    print(secret)
    return 0


def cmd_list(args, settings) -> int:
    cli.print_rows(endpoint_rows(args.tenant), COLUMNS, as_json=args.json)
    return 0


def cmd_rotate(args, settings) -> int:
    from domain import webhooks

    secret = webhooks.rotate_secret(args.tenant_id, args.id, by=cli.operator())
    print(f"webhook endpoint {args.id}: new secret below; the previous one signs beside it for 24 h.", file=sys.stderr)
    print(secret)
    return 0


def cmd_enable(args, settings) -> int:
    from domain import webhooks

    webhooks.enable_endpoint(args.tenant_id, args.id, by=cli.operator())
    print(f"webhook endpoint {args.id} of {args.tenant_id} enabled")
    return 0


def cmd_deliveries(args, settings) -> int:
    from storage import webhooks as webhook_rows
    from storage.tenants import TenantScope

    scope = TenantScope.every() if args.tenant is None else TenantScope.of(args.tenant)
    rows = [dict(id=d.id, tenant=d.tenant_id, event_id=d.event_id, event_type=d.event_type, endpoint_id=d.endpoint_id,
                 status=d.status, attempts=d.attempts, response_code=d.response_code,
                 next_attempt_at=d.next_attempt_at, last_error=d.last_error)
            for d in webhook_rows.list_deliveries(scope=scope, status=args.status, limit=args.limit)]
    cli.print_rows(rows, DELIVERY_COLUMNS, as_json=args.json)
    return 0
