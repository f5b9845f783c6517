"""`lamplighter accounts create|list`: managed accounts at the identity provider. Requests are
domain/accounts.py's; the rows storage/accounts.py's. Passwords are never shown or logged."""
from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from datetime import datetime

from console import cli

TABLE_COLUMNS = ["id", "organization", "username", "status", "retries", "next_retry_at", "idp_user_id",
                 "last_error"]


def register(verbs) -> None:
    acc = verbs.add_parser("accounts", help="managed accounts at the identity provider (Zitadel)")
    acc_actions = acc.add_subparsers(dest="accounts_action", metavar="ACTION", parser_class=cli.Parser)
    acc_actions.required = True
    ac = acc_actions.add_parser("create", help="queue a managed-account creation; the password is read from a "
                                               "prompt or the first line of stdin, never from the command line")
    ac.add_argument("--organization", required=True, help="family/organisation id the account belongs to")
    ac.add_argument("--username", required=True)
    ac.add_argument("--given-name", required=True)
    ac.add_argument("--family-name", required=True)
    ac.add_argument("--email", required=True)
    ac.add_argument("--role", required=True)
    ac.add_argument("--created-by", help="the requesting admin, notified if creation fails (default: you)")
    ac.add_argument("--no-password", action="store_true",
                    help="create the account without a password (Zitadel e-mails the user)")
    ac.set_defaults(run=cmd_accounts_create)
    al = acc_actions.add_parser("list", help="creation requests, newest first (passwords are never shown)")
    al.add_argument("--status", choices=("pending", "processing", "completed", "failed"))
    al.add_argument("--limit", type=cli.positive_int, default=50)
    al.add_argument("--json", action="store_true")
    al.set_defaults(run=cmd_accounts_list)


@dataclass(frozen=True)
class AccountRequestRow:
    """A creation request as `accounts list` shows it; the encrypted password is not part of it."""

    id: int
    organization: str
    username: str
    email: str
    role: str
    status: str
    retries: int
    next_retry_at: datetime
    idp_user_id: str | None
    created_by: str
    last_error: str | None


def account_requests(*, status: str | None = None, limit: int = 50) -> list[AccountRequestRow]:
    """Creation requests, newest first."""
    from storage import accounts as account_rows

    return [AccountRequestRow(id=r.id, organization=r.organization_id, username=r.username, email=r.email,
                              role=r.role, status=r.status, retries=r.retry_count, next_retry_at=r.next_retry_at,
                              idp_user_id=r.idp_user_id, created_by=r.created_by, last_error=r.last_error_message)
            for r in account_rows.list_requests(status=status, limit=limit)]


def table_rows(view: list[AccountRequestRow]) -> list[dict]:
    """The table shows the first 60 characters of the last error; JSON shows all of it."""
    return [{column: getattr(r, column) for column in TABLE_COLUMNS} | {"last_error": (r.last_error or "")[:60] or None}
            for r in view]


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the new account: ")
        if password != getpass.getpass("Repeat it: "):
            raise cli.UsageError("the passwords do not match")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise cli.UsageError("no password given (use --no-password to create the account without one)")
    return password


def cmd_accounts_list(args, settings) -> int:
    view = account_requests(status=args.status, limit=args.limit)
    if args.json:
        cli.print_json(view)
    else:
        print(cli.table(table_rows(view), TABLE_COLUMNS))
    return 0


def cmd_accounts_create(args, settings) -> int:
    from domain import accounts
    from storage.clock import SystemClock
    from storage.encryption import EncryptionError

    password = None if args.no_password else _read_password()
    try:
        request_id = accounts.request_account(
            SystemClock(settings.clock_offset), organization_id=args.organization, username=args.username,
            given_name=args.given_name, family_name=args.family_name, email=args.email, role=args.role,
            created_by=args.created_by or cli.operator(), password=password)
    except (accounts.InvalidAccountRequest, EncryptionError) as exc:
        raise cli.UsageError(str(exc)) from None
    print(f"account request {request_id} queued; the per-minute sweep creates it at the identity provider")
    return 0
