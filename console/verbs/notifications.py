"""`lamplighter notifications [--status S] [--json]` and `lamplighter notifications retry ID`: the
notification outbox (domain/notifications.py). Webhook recipients show only their origin: the
rest of the URL is often the hook's secret."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from console import cli

TABLE_COLUMNS = ["id", "kind", "channel", "recipient", "status", "attempts", "created_at", "delivered_at",
                 "last_error"]


def register(verbs) -> None:
    n = verbs.add_parser("notifications", help="the notification outbox: list, or retry a failed one")
    n.add_argument("--status", choices=("pending", "delivered", "failed"))
    n.add_argument("--limit", type=cli.positive_int, default=50)
    n.add_argument("--json", action="store_true")
    n.set_defaults(run=cmd_notifications)
    actions = n.add_subparsers(dest="notifications_action", metavar="ACTION", parser_class=cli.Parser)
    r = actions.add_parser("retry", help="deliver a failed notification again (a fresh allowance of attempts)")
    r.add_argument("id", metavar="ID", type=cli.positive_int)
    r.set_defaults(run=cmd_notifications_retry)


@dataclass(frozen=True)
class NotificationRow:
    id: int
    kind: str
    channel: str
    recipient: str  # kind:value; a webhook's URL as its origin only
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    tenant_id: str | None
    dedupe_key: str
    job_id: str | None


def shown_recipient(channel: str, recipient_kind: str, recipient: str) -> str:
    if channel == "webhook":
        parts = urlsplit(recipient)
        return f"webhook:{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/..."
    return f"{recipient_kind}:{recipient}"


def outbox(*, status: str | None = None, limit: int = 50) -> list[NotificationRow]:
    """The outbox, newest first."""
    from storage import notifications as notification_rows

    return [NotificationRow(id=n.id, kind=n.kind, channel=n.channel,
                            recipient=shown_recipient(n.channel, n.recipient_kind, n.recipient), subject=n.subject,
                            status=n.status, attempts=n.attempts, last_error=n.last_error, created_at=n.created_at,
                            delivered_at=n.delivered_at, tenant_id=n.tenant_id, dedupe_key=n.dedupe_key,
                            job_id=n.job_id)
            for n in notification_rows.list_notifications(status=status, limit=limit)]


def table_rows(view: list[NotificationRow]) -> list[dict]:
    """The table shows the first 60 characters of the last error; JSON shows all of it."""
    return [{column: getattr(r, column) for column in TABLE_COLUMNS} | {"last_error": (r.last_error or "")[:60] or None}
            for r in view]


def cmd_notifications(args, settings) -> int:
    view = outbox(status=args.status, limit=args.limit)
    if args.json:
        cli.print_json(view)
    else:
        print(cli.table(table_rows(view), TABLE_COLUMNS))
    return 0


def cmd_notifications_retry(args, settings) -> int:
    from domain import notifications
    from storage import notifications as notification_rows

    job_id = notifications.retry(args.id, by=cli.operator())
    if job_id is None:
        found = notification_rows.get(args.id)
        reason = f"no notification {args.id}" if found is None else \
            f"notification {args.id} is {found.status}, not failed: nothing to retry"
        print(f"lamplighter notifications: {reason}", file=sys.stderr)
        return cli.EXIT_FAILURE
    print(f"notification {args.id} queued for delivery again (job {job_id})")
    return 0
