"""`lamplighter config`: every setting as this process resolves it (flag > env > default, see
storage/settings.py), secrets never shown. `lamplighter up` prints the few that matter at start-up
(``startup_summary``) and leaves the rest to this verb."""
from __future__ import annotations

import re
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
    c.set_defaults(run=cmd_config)


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


def cmd_config(args, settings) -> int:
    view = settings_view(settings)
    if args.json:
        cli.print_json(view)
    else:
        print(cli.table(table_rows(view), TABLE_COLUMNS))
    return 0
