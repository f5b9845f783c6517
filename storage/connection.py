"""Connections: one driver (psycopg2) for peewee and the broker alike.

``database`` is the peewee database every storage module uses. Outside a transaction each
statement commits on its own (peewee runs in autocommit mode); inside ``database.atomic()``
storage functions, the broker's enqueue included, join the caller's transaction.
"""
from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlparse, urlunparse

import peewee
import psycopg2

from storage import clock as clock_module
from storage import embedded
from storage import settings as settings_module

database = peewee.PostgresqlDatabase(None, autorollback=False)

_lock = threading.Lock()
_url: str | None = None
_initialised_for: tuple[str, str] | None = None


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the message carries no password."""


def database_url() -> str:
    """DATABASE_URL, or the embedded server's URL (started on first use)."""
    global _url
    with _lock:
        if _url is None:
            current = settings_module.get()
            _url = current.database_url or embedded.ensure_running(current.data_dir)
        return _url


def connect_kwargs(application_name: str = "lamplighter") -> dict[str, str]:
    """libpq parameters added to every connection: keepalives so a vanished server is noticed
    in seconds rather than at TCP's default of hours, and the clock offset for tests."""
    current = settings_module.get()
    kwargs = {
        "application_name": application_name,
        "keepalives": "1",
        "keepalives_idle": "5",
        "keepalives_interval": "2",
        "keepalives_count": "3",
        "connect_timeout": "10",
    }
    option = clock_module.sql_offset_option(current.clock_offset)
    if option:
        kwargs["options"] = option
    return kwargs


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate query parameters (e.g. ``host=/socket/dir``) so they can be merged with ours."""
    parts = urlparse(url)
    params = dict(parse_qsl(parts.query))
    return urlunparse(parts._replace(query="")), params


LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


def tls_default(dsn: str, params: dict[str, str]) -> dict[str, str]:
    """``sslmode=require`` for a server reached over the network, unless the URL says otherwise
    (``?sslmode=verify-full``, or ``disable`` on a private network): a managed PostgreSQL's
    password and rows must not cross a network in clear. Loopback and Unix sockets keep libpq's
    default."""
    if "sslmode" in params:
        return {}
    host = params.get("host") or urlparse(dsn).hostname or ""
    if host in LOCAL_HOSTS or host.startswith("/"):
        return {}
    return {"sslmode": "require"}


def raw_connection(application_name: str = "lamplighter", *, direct: bool = False) -> psycopg2.extensions.connection:
    """A plain psycopg2 connection (broker consumer, LISTEN, migrations lock). ``direct``: to the
    server itself (LAMPLIGHTER_DIRECT_DATABASE_URL) when DATABASE_URL goes through a pooler."""
    direct_url = settings_module.get().direct_database_url if direct else ""
    dsn, params = split_url(direct_url or database_url())
    params = {**tls_default(dsn, params), **params}
    kwargs = {**connect_kwargs(application_name), **params}
    try:
        return psycopg2.connect(dsn, **kwargs)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {settings_module.redact_url(dsn)}: "
                                  f"{str(exc).strip().splitlines()[0]}") from None


def init_database(application_name: str = "lamplighter") -> peewee.PostgresqlDatabase:
    """Point the peewee database at DATABASE_URL (or the embedded server). Idempotent."""
    global _initialised_for
    url = database_url()
    if database.deferred or _initialised_for != (url, application_name):
        _initialised_for = (url, application_name)
        dsn, params = split_url(url)
        params = {**tls_default(dsn, params), **params}
        # peewee treats a None name as "not initialised"; libpq lets the DSN's name win anyway.
        name = urlparse(dsn).path.lstrip("/") or params.get("dbname") or "postgres"
        # peewee's init() merges into the previous parameters: a host= from an earlier URL's
        # query string would outlive it and win over the new DSN.
        database.connect_params = {}
        database.init(name, dsn=dsn, **{**connect_kwargs(application_name), **params})
    return database


def reset() -> None:
    """Forget the resolved URL and close peewee's connection (tests switch databases)."""
    global _url
    with _lock:
        _url = None
    if not database.deferred and not database.is_closed():
        database.close()


def transaction():
    """A transaction on peewee's connection (a savepoint inside one already open): storage
    functions called in it join it. For the domain, which does not import peewee."""
    return init_database().atomic()
