"""Connections: one driver (psycopg2) for peewee and the broker alike.

``database`` is the peewee database every storage module uses. Outside a transaction each
statement commits on its own (peewee runs in autocommit mode); inside ``database.atomic()``
storage functions, the broker's enqueue included, join the caller's transaction.

Every connection says which kind of process holds it (:func:`set_process_kind`, called once by
each entry point) in its ``application_name``: ``lamplighter-web`` for peewee's,
``lamplighter-worker/finisher`` for the engine's own, so ``pg_stat_activity`` tells them apart.
Session settings (the kind's statement timeout, the tests' clock offset) are SET right after
connecting, never sent as the libpq ``options`` startup parameter, which PgBouncer refuses.

``read_database`` serves the dashboard's read-only pages when LAMPLIGHTER_READ_DATABASE_URL
names a replica: storage reads made inside :func:`replica_reads` go there, everything else to
the primary.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import select
import sys
import threading
from urllib.parse import parse_qsl, urlparse, urlunparse

import peewee
import psycopg2
import psycopg2.extras

from storage import clock as clock_module
from storage import embedded
from storage import settings as settings_module
from storage.settings_types import PROCESS_KINDS


def _loads_jsonb(text: str):
    """psycopg2's jsonb decoding, except that a document Python's json cannot decode though
    jsonb holds it (a row inserted by SQL may: nested deeper than the recursion limit, or a
    number of over 4,300 digits) reads as a short note instead of raising, which failed the whole
    fetch: one such job made its API pages, dashboard page and `lamplighter jobs` fail."""
    try:
        return json.loads(text)
    except RecursionError:
        return f"(JSON of {len(text)} characters nested deeper than {sys.getrecursionlimit()} levels: not decoded)"
    except ValueError as exc:
        return f"(JSON of {len(text)} characters not decoded: {str(exc)[:200]})"


psycopg2.extras.register_default_jsonb(globally=True, loads=_loads_jsonb)

# PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name (and warns when it cuts).
APPLICATION_NAME_LIMIT = 63
# query_canceled: statement_timeout, or pg_cancel_backend.
QUERY_CANCELED = "57014"


class SessionDatabase(peewee.PostgresqlDatabase):
    """peewee's PostgreSQL database, each new connection given the session settings."""

    def __init__(self, *args, read_only: bool = False, **kwargs):
        self.read_only = read_only
        self.pointed_at: tuple[str, str] | None = None  # (url, application_name) of init()
        super().__init__(*args, **kwargs)

    def _initialize_connection(self, conn):
        start_session(conn, pooled=behind_pooler(), read_only=self.read_only)

    def cursor(self, named_cursor=None):
        # A connection the driver found closed (the server restarted or terminated it) is
        # replaced outside a transaction; peewee would hand it out again, and every later
        # statement of the thread (an application's `actor.send()`) would fail with
        # "connection already closed" until the process restarted.
        if not self.is_closed() and not self.in_transaction() and self._state.conn.closed:
            self.close()
        return super().cursor(named_cursor)


database = SessionDatabase(None, autorollback=False)
read_database = SessionDatabase(None, autorollback=False, read_only=True)

_lock = threading.Lock()
_url: str | None = None
_process_kind = "cli"
_replica_reads: contextvars.ContextVar[bool] = contextvars.ContextVar("lamplighter_replica_reads", default=False)


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the message carries no password."""


class StatementTimeout(RuntimeError):
    """The server cancelled a statement (SQLSTATE 57014): it ran past this process kind's
    statement timeout, or an operator cancelled it."""


def set_process_kind(kind: str) -> None:
    """What this process is (release, web, worker, scheduler, cli): its connections' names and
    statement timeout. Called once by each entry point before it connects; a connection this
    thread opened before is closed, so none keeps the old name."""
    global _process_kind
    if kind not in PROCESS_KINDS:
        raise ValueError(f"process kind {kind!r}: one of {', '.join(PROCESS_KINDS)}")
    _process_kind = kind
    for db in (database, read_database):
        if not db.deferred and not db.is_closed():
            db.close()


def process_kind() -> str:
    return _process_kind


def application_name(component: str = "") -> str:
    """``lamplighter-<kind>``, or ``lamplighter-<kind>/<component>`` for one part's connection."""
    name = f"lamplighter-{_process_kind}" + (f"/{component}" if component else "")
    return name.encode()[:APPLICATION_NAME_LIMIT].decode(errors="ignore")


def behind_pooler() -> bool:
    """LAMPLIGHTER_PREPARED_STATEMENTS=false says DATABASE_URL goes through a transaction
    pooler: a session SET there lands on whichever server connection serves it, and stays on
    it for the next client."""
    return not settings_module.get().prepared_statements


def session_settings(*, pooled: bool, read_only: bool = False) -> dict[str, str]:
    """What a new session is given with SET. Behind a pooler, only the tests' clock offset (the
    same value in every process of a deployment, read only by lamplighter.now()): the statement
    timeout would leak to other clients, so there it is the role's (docs/operations.md)."""
    current = settings_module.get()
    values = {}
    offset = clock_module.sql_offset_setting(current.clock_offset)
    if offset:
        values["lamplighter.clock_offset"] = offset
    if not pooled:
        timeout = current.database.statement_timeout(_process_kind)
        if timeout:
            values["statement_timeout"] = f"{max(1, round(timeout * 1000))}ms"
        if read_only:  # a replica refuses writes anyway; a primary named as one must too
            values["default_transaction_read_only"] = "on"
    return values


def start_session(conn, *, pooled: bool, read_only: bool = False) -> None:
    """SET the session settings on a new psycopg2 connection (one round trip; committed)."""
    values = session_settings(pooled=pooled, read_only=read_only)
    if not values:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(values)),
                    [part for pair in values.items() for part in pair])
    if not conn.autocommit:
        conn.commit()


def statement_timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (psycopg2's, or peewee's wrapping of it) is a cancelled statement."""
    seen = 0
    while exc is not None and seen < 5:
        if getattr(exc, "pgcode", None) == QUERY_CANCELED:
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


def timeout_message() -> str:
    seconds = settings_module.get().database.statement_timeout(_process_kind)
    variable = f"LAMPLIGHTER_STATEMENT_TIMEOUT_{_process_kind.upper()}"
    limit = f"its {seconds:g} s statement timeout ({variable})" if seconds else "the statement timeout"
    return f"the database cancelled the query: it ran past {limit}, or an operator cancelled it"


def drop_closed_connections() -> None:
    """Close this thread's kept peewee connections that the server has closed or is closing
    (a restart, ``pg_terminate_backend``, a dropped database), before a request or a scrape runs
    on them. An idle connection gets nothing from the server (it LISTENs to nothing) but its
    goodbye: a FATAL message and the end of the stream. Anything readable, then, means the
    connection is not worth using; peewee connects afresh on the next statement."""
    for db in (database, read_database):
        if db.deferred or db.is_closed():
            continue
        conn = db.connection()
        try:
            dead = bool(conn.closed) or bool(select.select([conn.fileno()], [], [], 0)[0])
        except (OSError, ValueError, psycopg2.Error):
            dead = True
        if dead:
            try:
                db.close()
            except (peewee.PeeweeException, psycopg2.Error):
                db._state.reset()  # broken beyond closing: forget it


def database_url() -> str:
    """DATABASE_URL, or the embedded server's URL (started on first use)."""
    global _url
    with _lock:
        if _url is None:
            current = settings_module.get()
            try:
                _url = current.database_url or embedded.ensure_running(current.data_dir)
            except embedded.EmbeddedServerError as exc:
                raise DatabaseUnavailable(str(exc)) from None
        return _url


def connect_kwargs(name: str) -> dict[str, str]:
    """libpq parameters added to every connection: its application_name, and keepalives so a
    vanished server is noticed in seconds rather than at TCP's default of hours. Never
    ``options``: PgBouncer refuses that startup parameter (session settings: start_session)."""
    return {
        "application_name": name,
        "keepalives": "1",
        "keepalives_idle": "5",
        "keepalives_interval": "2",
        "keepalives_count": "3",
        "connect_timeout": "10",
    }


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


def raw_connection(component: str = "", *, direct: bool = False) -> psycopg2.extensions.connection:
    """A plain psycopg2 connection (broker consumer, LISTEN, migrations lock), named
    ``lamplighter-<kind>/<component>``. ``direct``: to the server itself
    (LAMPLIGHTER_DIRECT_DATABASE_URL) when DATABASE_URL goes through a pooler."""
    direct_url = settings_module.get().direct_database_url if direct else ""
    dsn, params = split_url(direct_url or database_url())
    params = {**tls_default(dsn, params), **params}
    kwargs = {**connect_kwargs(application_name(component)), **params}
    conn = None
    try:
        conn = psycopg2.connect(dsn, **kwargs)
        start_session(conn, pooled=behind_pooler() and not direct_url)
        return conn
    except psycopg2.OperationalError as exc:
        if conn is not None:
            conn.close()
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {settings_module.redact_url(dsn)}: "
                                  f"{str(exc).strip().splitlines()[0]}") from None


def _point(db: SessionDatabase, url: str, name: str) -> SessionDatabase:
    if db.deferred or db.pointed_at != (url, name):
        db.pointed_at = (url, name)
        dsn, params = split_url(url)
        params = {**tls_default(dsn, params), **params}
        # peewee treats a None name as "not initialised"; libpq lets the DSN's name win anyway.
        dbname = urlparse(dsn).path.lstrip("/") or params.get("dbname") or "postgres"
        # peewee's init() merges into the previous parameters: a host= from an earlier URL's
        # query string would outlive it and win over the new DSN.
        db.connect_params = {}
        db.init(dbname, dsn=dsn, **{**connect_kwargs(name), **params})
    return db


def init_database(name: str | None = None) -> peewee.PostgresqlDatabase:
    """The peewee database for this thread's storage calls, pointed at DATABASE_URL (or the
    embedded server); inside :func:`replica_reads`, at LAMPLIGHTER_READ_DATABASE_URL when it is
    set. Idempotent. ``name``: an application_name of the caller's own (benchmarks), instead of
    the process kind's."""
    if _replica_reads.get():
        read_url = settings_module.get().database.read_url
        if read_url:
            return _point(read_database, read_url, application_name("read"))
    return _point(database, database_url(), name or application_name())


@contextlib.contextmanager
def replica_reads():
    """Storage reads in this block (this thread) go to the read replica when one is set. Only
    for pages that write nothing: a replica refuses writes, and lags the primary."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def on_replica(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` inside :func:`replica_reads`."""
    with replica_reads():
        return fn(*args, **kwargs)


def reset() -> None:
    """Forget the resolved URL and close peewee's connection (tests switch databases)."""
    global _url
    with _lock:
        _url = None
    for db in (database, read_database):
        if not db.deferred and not db.is_closed():
            db.close()
        db.pointed_at = None


def transaction():
    """A transaction on peewee's connection (a savepoint inside one already open): storage
    functions called in it join it. For the domain, which does not import peewee."""
    return init_database().atomic()
