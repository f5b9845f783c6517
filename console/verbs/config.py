"""`lamplighter config`: every setting as this process resolves it (flag > env > default, see
storage/settings.py), secrets never shown. `lamplighter up` prints the few that matter at start-up
(``startup_summary``) and leaves the rest to this verb."""
from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from console import cli

if TYPE_CHECKING:
    from storage.settings import Settings

TABLE_COLUMNS = ["setting", "value"]
_QUERY_PASSWORD = re.compile(r"(?i)(^|&)(password)=[^&]*")


def register(verbs) -> None:
    c = verbs.add_parser("config", help="the resolved settings (secrets redacted)")
    c.add_argument("--json", action="store_true")
    c.add_argument("--formation", type=_formation, metavar="SPEC",
                   help="the connections a formation opens, e.g. web=2,worker=4x8,scheduler=1 (worker=DYNOSxTHREADS)")
    c.add_argument("--limit", type=cli.positive_int, metavar="N",
                   help="the plan's connection limit (default: the server's max_connections less reserved ones)")
    c.set_defaults(run=cmd_config)


def _formation(text: str) -> str:
    import argparse

    from console import formation

    try:
        formation.parse(text)
    except formation.FormationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def database_shown(url: str) -> str:
    """The database as it is safe to print: "(embedded)", or the URL with no password, neither
    the user:password@ kind nor libpq's ?password= parameter."""
    if not url:
        return "(embedded)"
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user_info, host = netloc.rsplit("@", 1)
        if ":" in user_info:
            user_info = user_info.split(":", 1)[0] + ":***"
        netloc = f"{user_info}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=_QUERY_PASSWORD.sub(r"\1\2=***", parts.query)))


def settings_view(settings: Settings) -> dict[str, object]:
    """Every setting by its name in storage/settings.py; secrets say only whether they are set."""
    shown = settings.public()
    shown["database_url"] = database_shown(settings.database_url)
    return shown


def startup_summary(settings: Settings) -> dict[str, object]:
    """What a newcomer needs from `up`'s first line: where the data is, how many workers, which port."""
    return {"database": database_shown(settings.database_url), "data_dir": str(settings.data_dir),
            "workers": f"{settings.worker_processes} processes x {settings.worker_threads} threads",
            "port": settings.port, "all_settings": "lamplighter config"}


def table_rows(view: dict[str, object]) -> list[dict]:
    """One row per setting, its value exactly as set (the table's one-decimal floats would turn
    0.005 into 0.0); an empty value (e.g. queues: all declared) reads "-"."""
    return [{"setting": name, "value": None if value in ((), "") else str(value)} for name, value in view.items()]


def formation_view(spec: str, settings: Settings, limit: int | None) -> dict:
    """The connection budget of ``spec`` (console/formation.py) against ``limit``: plain data."""
    from console import formation

    lines = formation.budget(spec, settings)
    total = sum(line.total for line in lines)
    return {"rows": [{"process": line.kind, "dynos": line.dynos, "per_dyno": line.per_dyno, "total": line.total,
                      "how": line.how} for line in lines],
            "total": total, "limit": limit, "fits": limit is None or total <= limit}


def _server_limit() -> int | None:
    """max_connections less the superuser-reserved ones, or None when the server cannot be asked."""
    from storage import connection

    try:
        conn = connection.raw_connection("config")
    except connection.DatabaseUnavailable:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_setting('max_connections')::int - "
                    "current_setting('superuser_reserved_connections')::int")
        return cur.fetchone()[0]
    finally:
        conn.close()


def cmd_config(args, settings) -> int:
    if args.formation:
        view = formation_view(args.formation, settings, args.limit or _server_limit())
        if args.json:
            cli.print_json(view)
        else:
            print(cli.table(view["rows"], ["process", "dynos", "per_dyno", "total", "how"]))
            print(f"total: {view['total']} connections" + (f" of {view['limit']}" if view["limit"] else ""))
        if not view["fits"]:
            print(f"lamplighter: the formation opens {view['total']} connections, over the limit of "
                  f"{view['limit']}: fewer dynos or threads, a smaller LAMPLIGHTER_WEB_POOL_SIZE, or a "
                  "transaction pooler (README \"Deploy\")", file=sys.stderr)
            return cli.EXIT_FAILURE
        return 0
    view = settings_view(settings)
    if args.json:
        cli.print_json(view)
    else:
        print(cli.table(table_rows(view), TABLE_COLUMNS))
    return 0
