"""`lamplighter users create|list|disable|reset-password`: people who sign in to the dashboard.
The rules are domain/users.py's. Passwords come from a prompt or stdin, never from the command
line, and are never shown. The CLI acts as a platform superadmin, recorded as `cli:<user>@<host>`."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from console import cli


def register(verbs) -> None:
    from domain.scopes import ROLES

    u = verbs.add_parser("users", help="dashboard users: create, list, disable, reset a password")
    actions = u.add_subparsers(dest="users_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    c = actions.add_parser("create", help="create a user; the password is read from a prompt or the first line "
                                          "of stdin, never from the command line")
    c.add_argument("--email", required=True)
    c.add_argument("--name", required=True, help="display name")
    c.add_argument("--role", required=True, choices=tuple(ROLES))
    c.add_argument("--tenant", type=cli.tenant_id, help="the user's tenant (none: a platform user)")
    c.add_argument("--no-password", action="store_true",
                   help="create the user without a password (it cannot sign in until reset-password)")
    c.set_defaults(run=cmd_users_create)
    ls = actions.add_parser("list", help="users, oldest first")
    ls.add_argument("--tenant", type=cli.tenant_id, help="only this tenant's users")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_users_list)
    d = actions.add_parser("disable", help="disable a user (it can no longer sign in) and end its sessions")
    d.add_argument("user", metavar="USER", help="user id or e-mail address")
    d.set_defaults(run=cmd_users_disable)
    r = actions.add_parser("reset-password", help="set a new password (prompt or stdin); ends the user's sessions")
    r.add_argument("user", metavar="USER", help="user id or e-mail address")
    r.set_defaults(run=cmd_users_reset_password)


@dataclass(frozen=True)
class UserRow:
    """A user as `users list` shows it; the password hash is not part of it."""

    id: int
    email: str
    name: str
    role: str
    tenant: str | None
    state: str  # active | disabled
    last_login: datetime | None
    created: datetime


COLUMNS = [f.name for f in fields(UserRow)]


def user_row(user) -> UserRow:
    return UserRow(id=user.id, email=user.email, name=user.display_name, role=user.role, tenant=user.tenant_id,
                   state="disabled" if user.disabled else "active", last_login=user.last_login_at,
                   created=user.created_at)


def _scope(tenant: str | None = None):
    """One tenant's users, or (the CLI is a platform superadmin) every tenant's."""
    from storage.tenants import TenantScope

    return TenantScope.of(tenant) if tenant else TenantScope.every()


def user_rows(*, tenant: str | None = None) -> list[UserRow]:
    from domain import users

    return [user_row(u) for u in users.list_users(scope=_scope(tenant))]


def cmd_users_create(args, settings) -> int:
    from domain import users

    password = None if args.no_password else cli.read_secret("Password for the new user")
    user = users.create_user(email=args.email, display_name=args.name, role=args.role, password=password,
                             tenant_id=args.tenant, by=cli.operator())
    print(f"user {user.id} ({user.email}) created, role {user.role}"
          + (f", tenant {user.tenant_id}" if user.tenant_id else ", platform user")
          + ("" if password else "; no password yet: set one with `lamplighter users reset-password`"))
    return 0


def cmd_users_list(args, settings) -> int:
    cli.print_rows(user_rows(tenant=args.tenant), COLUMNS, as_json=args.json)
    return 0


def cmd_users_disable(args, settings) -> int:
    from domain import users

    user = users.disable_user(args.user, scope=_scope(), by=cli.operator())
    print(f"user {user.id} ({user.email}) disabled")
    return 0


def cmd_users_reset_password(args, settings) -> int:
    from domain import users

    scope = _scope()
    user = users.find_user(args.user, scope=scope)  # before the prompt: a typo needs no password typed
    password = cli.read_secret(f"New password for {user.email}")
    users.reset_password(user.id, password, scope=scope, by=cli.operator())
    print(f"password of user {user.id} ({user.email}) reset; its sessions have ended")
    return 0
