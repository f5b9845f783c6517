"""`lamplighter alerts [--open] [--json]` and `lamplighter alerts resolve ID`: incidents
(domain/alerts.py). Closing one by hand notifies like a resolution the rule saw, and records who
closed it (resolved_by, and an `alert_resolved_by_hand` log line)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime

from console import cli

TABLE_COLUMNS = ["id", "rule", "subject", "state", "count", "opened_at", "last_seen_at", "resolved_at",
                 "resolved_by"]


def register(verbs) -> None:
    a = verbs.add_parser("alerts", help="incidents: list them, or close one by hand")
    a.add_argument("--open", action="store_true", help="open incidents only")
    a.add_argument("--limit", type=cli.positive_int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(run=cmd_alerts)
    actions = a.add_subparsers(dest="alerts_action", metavar="ACTION", parser_class=cli.Parser)
    r = actions.add_parser("resolve", help="close an open incident by hand (notified and recorded)")
    r.add_argument("id", metavar="ID", type=cli.positive_int)
    r.set_defaults(run=cmd_alerts_resolve)


@dataclass(frozen=True)
class AlertRow:
    id: int
    rule: str
    subject: str  # kind:value
    state: str  # open | resolved
    count: int
    details: dict
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


def incidents(*, open_only: bool = False, limit: int = 50) -> list[AlertRow]:
    """Incidents, newest first."""
    from domain import alerts

    return [AlertRow(id=a.id, rule=a.rule, subject=f"{a.subject_kind}:{a.subject}",
                     state="open" if a.resolved_at is None else "resolved", count=a.count, details=a.details,
                     opened_at=a.opened_at, last_seen_at=a.last_seen_at, resolved_at=a.resolved_at,
                     resolved_by=a.resolved_by)
            for a in alerts.list_alerts(open_only=open_only, limit=limit)]


def cmd_alerts(args, settings) -> int:
    cli.print_rows(incidents(open_only=args.open, limit=args.limit), TABLE_COLUMNS, as_json=args.json)
    return 0


def cmd_alerts_resolve(args, settings) -> int:
    from domain import alerts

    try:
        alert = alerts.resolve_by_hand(args.id, by=cli.operator())
    except (alerts.AlertNotFound, alerts.AlertNotOpen) as exc:
        print(f"lamplighter alerts: {exc}", file=sys.stderr)
        return cli.EXIT_FAILURE
    print(f"alert {alert.id} ({alert.rule} on {alert.subject_kind}:{alert.subject}) resolved")
    return 0
