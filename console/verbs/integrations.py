"""`lamplighter integrations list|show|connect|refresh|providers|add-provider`: tenants' cloud
integrations (domain/integrations.py). Tokens and client secrets come from stdin (or a prompt),
never from the command line, and are never shown; the CLI acts as a platform superadmin,
recorded as `cli:<user>@<host>`."""
from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass, fields
from datetime import datetime

from console import cli


def register(verbs) -> None:
    i = verbs.add_parser("integrations", help="cloud integrations: list, show, connect, refresh; their providers")
    actions = i.add_subparsers(dest="integrations_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    ls = actions.add_parser("list", help="integrations, newest first")
    ls.add_argument("--tenant", type=cli.tenant_id, help="only this tenant's")
    ls.add_argument("--status", choices=("active", "expired", "revoked", "error"))
    ls.add_argument("--limit", type=cli.positive_int, default=100)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_list)
    show = actions.add_parser("show", help="one integration and some of its indexed files")
    show.add_argument("id", metavar="ID", type=cli.positive_int)
    show.add_argument("--files", type=cli.positive_int, default=20, help="how many indexed files to list")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)
    c = actions.add_parser("connect", help="store a tenant's tokens for a provider: the token endpoint's JSON "
                                           "answer (access_token, refresh_token, expires_in) on stdin, never argv")
    c.add_argument("--tenant", type=cli.tenant_id, required=True)
    c.add_argument("--provider", required=True, help="a provider's name (`integrations providers`)")
    c.add_argument("--name", default="default", help="tells a tenant's integrations with one provider apart; "
                                                     "connecting an existing name connects it again")
    c.add_argument("--owner", help="user id or e-mail of the tenant's user told when it breaks (default: the "
                                   "tenant's owners)")
    c.set_defaults(run=cmd_connect)
    r = actions.add_parser("refresh", help="refresh an integration's tokens now (its pending refresh, moved up)")
    r.add_argument("id", metavar="ID", type=cli.positive_int)
    r.set_defaults(run=cmd_refresh)
    p = actions.add_parser("providers", help="the cloud providers integrations may use")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_providers)
    a = actions.add_parser("add-provider", help="add or change a provider; the client secret is read from a prompt "
                                                "or the first line of stdin")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--token-url", required=True)
    a.add_argument("--userinfo-url", required=True)
    a.add_argument("--files-url", required=True)
    a.add_argument("--client-id", required=True)
    a.add_argument("--client-auth", choices=("client_secret_basic", "client_secret_post"),
                   default="client_secret_basic", help="how the client authenticates at the token endpoint")
    a.set_defaults(run=cmd_add_provider)


@dataclass(frozen=True)
class IntegrationRow:
    """An integration as `integrations list` shows it; no token is part of it."""

    id: int
    tenant: str
    provider: str
    name: str
    status: str
    expires_at: datetime
    last_refreshed_at: datetime | None
    last_health_check_at: datetime | None
    last_indexed_at: datetime | None
    files: int
    message: str | None


COLUMNS = ["id", "tenant", "provider", "name", "status", "expires_at", "last_refreshed_at", "last_health_check_at",
           "last_indexed_at", "files"]


@dataclass(frozen=True)
class ProviderRow:
    id: int
    name: str
    client_id: str
    client_auth: str
    token_url: str
    userinfo_url: str
    files_url: str


def _every():
    from storage.tenants import TenantScope

    return TenantScope.every()


def integration_rows(*, tenant: str | None = None, status: str | None = None, limit: int = 100) -> list[IntegrationRow]:
    from storage import integrations
    from storage.tenants import TenantScope

    scope = TenantScope.of(tenant) if tenant else _every()
    return [IntegrationRow(id=s.integration.id, tenant=s.integration.tenant_id, provider=s.provider_name,
                           name=s.integration.name, status=s.integration.status, expires_at=s.integration.expires_at,
                           last_refreshed_at=s.integration.last_refreshed_at,
                           last_health_check_at=s.integration.last_health_check_at,
                           last_indexed_at=s.integration.last_indexed_at, files=s.files,
                           message=s.integration.status_message)
            for s in integrations.list_integrations(scope=scope, status=status, limit=limit)]


def integration_view(integration_id: int, *, files: int = 20) -> dict:
    """One integration (no token) with its first indexed files by path."""
    from domain import integrations
    from storage import integrations as rows

    row = integrations.get(integration_id, scope=_every())
    provider = rows.get_provider(row.provider_id)
    hidden = ("access_token", "refresh_token", "now")
    shown = {f.name: getattr(row, f.name) for f in fields(row) if f.name not in hidden}
    shown["provider"] = provider.name if provider else None
    shown["has_refresh_token"] = row.refresh_token is not None
    shown["files"] = [{"path": f.path, "size_bytes": f.size_bytes, "mime_type": f.mime_type,
                       "modified_at": f.modified_at, "provider_file_id": f.provider_file_id}
                      for f in rows.list_files(row.id, scope=_every(), limit=files)]
    return shown


def provider_rows() -> list[ProviderRow]:
    from storage import integrations

    return [ProviderRow(id=p.id, name=p.name, client_id=p.client_id, client_auth=p.client_auth_method,
                        token_url=p.token_url, userinfo_url=p.userinfo_url, files_url=p.files_url)
            for p in integrations.list_providers()]


def read_token_response():
    """The token endpoint's JSON answer from stdin (or, on a terminal, pasted at a hidden prompt)."""
    from domain import integrations

    text = getpass.getpass("Token response (JSON): ") if sys.stdin.isatty() else sys.stdin.read()
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise cli.UsageError("stdin is not a JSON token response ({\"access_token\": ..., \"refresh_token\": ..., "
                             "\"expires_in\": ...}); its content is not shown") from None
    return integrations.token_response(body)


# ---- commands ------------------------------------------------------------------------------

def cmd_list(args, settings) -> int:
    cli.print_rows(integration_rows(tenant=args.tenant, status=args.status, limit=args.limit), COLUMNS,
                   as_json=args.json)
    return 0


def cmd_show(args, settings) -> int:
    view = integration_view(args.id, files=args.files)
    if args.json:
        cli.print_json(view)
        return 0
    listed = view.pop("files")
    for name, value in view.items():
        print(f"{name + ':':22}{cli.cell(value)}")
    print()
    print(cli.table(listed, ["path", "size_bytes", "mime_type", "modified_at", "provider_file_id"]))
    return 0


def cmd_connect(args, settings) -> int:
    from actors.integrations import JOBS
    from domain import integrations

    tokens = read_token_response()
    row = integrations.connect(tenant_id=args.tenant, provider=args.provider, tokens=tokens, jobs=JOBS,
                               settings=settings.integrations, by=cli.operator(), name=args.name, owner=args.owner)
    print(f"integration {row.id} ({args.provider}/{row.name}) of tenant {row.tenant_id} connected, "
          f"generation {row.generation}; tokens expire at {row.expires_at.isoformat(timespec='seconds')}")
    return 0


def cmd_refresh(args, settings) -> int:
    from actors.integrations import JOBS
    from domain import integrations

    job_id = integrations.request_refresh(args.id, scope=_every(), jobs=JOBS, by=cli.operator())
    print(f"refresh of integration {args.id} queued: job {job_id}")
    return 0


def cmd_providers(args, settings) -> int:
    cli.print_rows(provider_rows(), ["id", "name", "client_id", "client_auth", "token_url"], as_json=args.json)
    return 0


def cmd_add_provider(args, settings) -> int:
    from domain import integrations

    secret = cli.read_secret(f"Client secret of {args.client_id}", what="client secret")
    provider = integrations.save_provider(name=args.name, token_url=args.token_url, userinfo_url=args.userinfo_url,
                                          files_url=args.files_url, client_id=args.client_id, client_secret=secret,
                                          client_auth_method=args.client_auth, by=cli.operator())
    print(f"cloud provider {provider.id} ({provider.name}) saved, client authentication {provider.client_auth_method}")
    return 0
