"""`lamplighter tenants create|list|set-status`: tenants and their billing status. What a status
allows is domain/tenants.py's to say; this module only lays tenants out."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from console import cli


def register(verbs) -> None:
    from domain.tenants import STATUSES

    t = verbs.add_parser("tenants", help="tenants: create, list, set billing status")
    actions = t.add_subparsers(dest="tenants_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    c = actions.add_parser("create", help="create a tenant (active)")
    c.add_argument("tenant_id", metavar="ID", type=cli.tenant_id,
                   help="the id other services put in a job's tenant_id (lowercase letters, digits, '-', '_')")
    c.add_argument("--name", required=True)
    c.set_defaults(run=cmd_tenants_create)
    ls = actions.add_parser("list", help="tenants by id")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_tenants_list)
    s = actions.add_parser("set-status", help="change a tenant's billing status")
    s.add_argument("tenant_id", metavar="ID", type=cli.tenant_id)
    s.add_argument("status", metavar="STATUS", choices=STATUSES, help=" | ".join(STATUSES))
    s.add_argument("--grace", type=cli.duration, default=None,
                   help="with grace: how long the grace period lasts (default 14d)")
    s.set_defaults(run=cmd_tenants_set_status)


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    status: str
    effective: str  # what the status amounts to now (a grace period past its end: read_only)
    may: str  # what the tenant may do now: read, write, upload
    grace_until: datetime | None
    created: datetime


COLUMNS = [f.name for f in fields(TenantRow)]
DEFAULT_GRACE = timedelta(days=14)


def tenant_row(tenant, now: datetime) -> TenantRow:
    from domain import tenants

    effective = tenants.effective_status(tenant.billing_status, tenant.grace_period_ends_at, now)
    may = [what for what, allowed in (("read", tenants.may_read(effective)), ("write", tenants.may_write(effective)),
                                      ("upload", tenants.may_upload(effective))) if allowed]
    return TenantRow(id=tenant.id, name=tenant.name, status=tenant.billing_status, effective=effective,
                     may=",".join(may) or "nothing", grace_until=tenant.grace_period_ends_at,
                     created=tenant.created_at)


def tenant_rows(now: datetime) -> list[TenantRow]:
    from domain import tenants

    return [tenant_row(t, now) for t in tenants.list_tenants()]


def cmd_tenants_create(args, settings) -> int:
    from domain import tenants

    tenant = tenants.create_tenant(args.tenant_id, args.name, by=cli.operator())
    print(f"tenant {tenant.id} ({tenant.name}) created, {tenant.billing_status}")
    return 0


def cmd_tenants_list(args, settings) -> int:
    from storage.clock import SystemClock

    cli.print_rows(tenant_rows(SystemClock(settings.clock_offset).now()), COLUMNS, as_json=args.json)
    return 0


def cmd_tenants_set_status(args, settings) -> int:
    from domain import tenants
    from storage.clock import SystemClock

    if args.grace is not None and args.status != "grace":
        raise cli.UsageError("--grace goes with the grace status")
    grace_end = None
    if args.status == "grace":
        grace_end = SystemClock(settings.clock_offset).now() + (args.grace or DEFAULT_GRACE)
    tenant = tenants.set_status(args.tenant_id, args.status, grace_period_ends_at=grace_end, by=cli.operator())
    print(f"tenant {tenant.id} is now {tenant.billing_status}"
          + (f" until {grace_end.isoformat(timespec='seconds')}" if grace_end else ""))
    return 0
