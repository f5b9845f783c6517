"""`lamplighter health [--json]`: the newest health check's verdict (domain/health.py), exit 0
when it passes and 1 when it fails or is older than twice the interval (a container health
check can run it)."""
from __future__ import annotations

import sys

from console import cli


def register(verbs) -> None:
    h = verbs.add_parser("health", help="the newest health check: exit 0 healthy, 1 failing or stale")
    h.add_argument("--json", action="store_true")
    h.set_defaults(run=cmd_health)


def health_view(settings):
    from domain import health

    return health.status(interval=settings.operations.health_interval)


def table_rows(view) -> list[dict]:
    return [{"check": name, "ok": "yes" if c.get("ok") else "NO", "message": c.get("message", "")}
            for name, c in sorted(view.checks.items())]


def cmd_health(args, settings) -> int:
    view = health_view(settings)
    if args.json:
        cli.print_json(view)
    else:
        when = "-" if view.checked_at is None else f"{cli.cell(view.checked_at)} ({view.age_s:.0f} s ago)"
        print(f"{'healthy' if view.ok else 'FAILING'}: {view.message}\nchecked: {when}")
        if view.checks:
            print(cli.table(table_rows(view), ["check", "ok", "message"]))
    if not view.ok:
        print(f"lamplighter health: {view.message}", file=sys.stderr)
        return cli.EXIT_FAILURE
    return 0
