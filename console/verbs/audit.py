"""`lamplighter audit [--actor A] [--action X] [--tenant T] [--since WHEN]`: the audit log, newest
first. Rows come from domain/audit.py; this module lays them out."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from console import cli


def register(verbs) -> None:
    a = verbs.add_parser("audit", help="the audit log: who did what, newest first")
    a.add_argument("--actor", help="e.g. user:3, token:7, cli:root@host, system:tokens.prune_expired")
    a.add_argument("--action", help="e.g. token.created, or a prefix ending in '*': 'user.*'")
    a.add_argument("--tenant", type=cli.tenant_id, help="only this tenant's rows")
    a.add_argument("--since", type=cli.moment_or_age, help="an age (24h, 7d) or an ISO 8601 date or time")
    a.add_argument("--limit", type=cli.positive_int, default=100)
    a.add_argument("--json", action="store_true")
    a.set_defaults(run=cmd_audit)


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    actor: str
    action: str
    target: str | None  # type:id
    tenant: str | None
    source: str | None
    details: dict  # the table shows its first 80 characters as JSON


COLUMNS = [f.name for f in fields(AuditRow)]


def audit_rows(*, actor: str | None = None, action: str | None = None, tenant: str | None = None,
               since: datetime | None = None, limit: int = 100) -> list[AuditRow]:
    from domain import audit
    from storage.tenants import TenantScope

    scope = TenantScope.of(tenant) if tenant else TenantScope.every()
    return [AuditRow(at=e.at, actor=e.actor, action=e.action,
                     target=f"{e.target_type}:{e.target_id}" if e.target_type else e.target_id,
                     tenant=e.tenant_id, source=e.source_address,
                     details=e.details)
            for e in audit.entries(scope=scope, actor=actor, action=action, since=since, limit=limit)]


def cmd_audit(args, settings) -> int:
    from storage.clock import SystemClock

    since = args.since
    if isinstance(since, timedelta):
        since = SystemClock(settings.clock_offset).now() - since
    view = audit_rows(actor=args.actor, action=args.action, tenant=args.tenant, since=since, limit=args.limit)
    if args.json:
        cli.print_json(view)
    else:
        print(cli.table([{**vars(r), "details": json.dumps(r.details, sort_keys=True)[:80] if r.details else None}
                         for r in view], COLUMNS))
    return 0
