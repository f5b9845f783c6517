"""Named SQL, one file per concern under storage/sql/, loaded once, and the query helper every
storage module uses.

A file holds sections headed ``-- name: job_claim_batch --``; ``queries("jobs")["job_claim_batch"]``
returns the text. Parameters use psycopg2's ``%(name)s`` style. A storage module runs its
queries with :func:`run` (on peewee's connection, joining the caller's transaction, or on a given
psycopg2 connection) and reads rows as dicts with :func:`rows`.

Hot queries run as server-side prepared statements (:func:`execute`): PostgreSQL plans them
once per session, not on every call.
"""
from __future__ import annotations

import functools
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2.errors

SQL_DIRECTORY = Path(__file__).parent / "sql"
_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*--\s*$", re.MULTILINE)


@functools.cache
def queries(concern: str) -> dict[str, str]:
    text = (SQL_DIRECTORY / f"{concern}.sql").read_text()
    parts = _HEADER.split(text)
    named = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in named:
            raise ValueError(f"storage/sql/{concern}.sql: query {name!r} defined twice")
        named[name] = body.strip()
    return named


def rows(cursor) -> list[dict[str, Any]]:
    """The cursor's rows as dicts by column name."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def run(sql: dict[str, str], name: str, params: dict | None = None, *, conn=None):
    """Run the query ``name`` of ``sql`` (a :func:`queries` dict) on ``conn`` (psycopg2), or on
    peewee's connection, joining its transaction if one is open. Returns the cursor."""
    text = sql[name]
    if conn is not None:
        cursor = conn.cursor()
        cursor.execute(text, params or {})
        return cursor
    from storage import connection  # storage.connection imports settings, which is light; lazy

    return connection.init_database().execute_sql(text, params or {})


def transaction():
    """A transaction (a savepoint inside the caller's) on peewee's connection, for domain code
    that makes several storage calls one unit without importing peewee:
    ``with transaction(): rows_a.change(...); notifications.notify(...)``."""
    from storage import connection

    return connection.init_database().atomic()


def runner(concern: str):
    """``execute(name, params=None, *, conn=None)`` for the queries of storage/sql/<concern>.sql:
    what a storage module binds once (``execute = runner("accounts")``)."""
    sql = queries(concern)

    def execute(name: str, params: dict | None = None, *, conn=None):
        return run(sql, name, params, conn=conn)

    return execute


class StalePreparedStatement(Exception):
    """The session lost a statement we prepared (DISCARD ALL, a pooler that switched server
    connections) or a migration changed what it returns: reconnect, prepare again, retry."""


_PARAMETER = re.compile(r"%\(([a-z_][a-z0-9_]*)\)s")
_prepared_on: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()


@dataclass(frozen=True)
class PreparedStatement:
    """A named query as a server-side prepared statement: parsed and planned once per session
    instead of on every call (the claim's plan costs five times its execution)."""

    name: str
    prepare: str  # PREPARE <name> AS <the query with $1, $2, ...>
    execute: str  # EXECUTE <name>(%(first)s, %(second)s, ...), for psycopg2's interpolation


@functools.cache
def prepared_statement(concern: str, name: str) -> PreparedStatement:
    text = queries(concern)[name]
    order: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    body = _PARAMETER.sub(number, _without_comments(text)).replace("%%", "%")
    statement = f"lamplighter_{concern}_{name}"
    arguments = ", ".join(f"%({p})s" for p in order)
    return PreparedStatement(name=statement, prepare=f"PREPARE {statement} AS {body}",
                             execute=f"EXECUTE {statement}({arguments})" if order else f"EXECUTE {statement}")


def _without_comments(text: str) -> str:
    """The query without its ``--`` comments (they may name parameters the body does not use)."""
    out, quoted, i = [], False, 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted
        elif not quoted and text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _ensure_prepared(cursor, statement: PreparedStatement) -> None:
    conn = cursor.connection
    with _prepared_lock:
        done = _prepared_on.setdefault(conn, set())
    if statement.name not in done:
        cursor.execute(statement.prepare)
        done.add(statement.name)


def _stale(cursor, statement_name: str, exc: Exception) -> StalePreparedStatement:
    # 26000: not prepared in this server session; 0A000: "cached plan must not change result
    # type" after a migration. Either way this session's statements are suspect.
    with _prepared_lock:
        _prepared_on.pop(cursor.connection, None)
    return StalePreparedStatement(f"{statement_name}: {str(exc).strip().splitlines()[0]}")


def execute_together(cursor, concern: str, calls: list[tuple[str, dict]], *, prepare: bool = True,
                     before_send=None):
    """Run several named queries as one simple-query message: one round trip, and, on an
    autocommit connection, one implicit transaction (all or nothing). The cursor holds the
    last statement's result. Each lock wait, round trip and commit costs a busy worker thread
    the GIL twice; one message instead of BEGIN + N statements + COMMIT saves N + 1 of them.
    ``before_send`` is called once the message is built, just before it goes out."""
    if not calls:
        return cursor
    if not prepare:
        text = b";\n".join(cursor.mogrify(queries(concern)[name], params or {}) for name, params in calls)
        if before_send is not None:
            before_send()
        cursor.execute(text)
        return cursor
    statements = [prepared_statement(concern, name) for name, _ in calls]
    for statement in statements:
        _ensure_prepared(cursor, statement)
    text = b";\n".join(cursor.mogrify(statement.execute, params or {})
                       for statement, (_, params) in zip(statements, calls))
    if before_send is not None:
        before_send()
    try:
        cursor.execute(text)
    except (psycopg2.errors.InvalidSqlStatementName, psycopg2.errors.FeatureNotSupported) as exc:
        raise _stale(cursor, "+".join(s.name for s in statements), exc) from None
    return cursor


def execute(cursor, concern: str, name: str, params: dict | None = None, *, prepare: bool = True,
            begin: bool = False, commit: bool = False):
    """Run a named query on a psycopg2 cursor, prepared on its connection the first time
    (``prepare=False``: sent as text every time, e.g. behind a transaction-mode pooler).

    On an autocommit connection, ``begin=True`` opens a transaction in the same message (no
    extra round trip) that stays open after the query; ``commit=True`` ends one after it."""
    statement = prepared_statement(concern, name) if prepare else None
    query = statement.execute if statement is not None else queries(concern)[name]
    arguments: tuple = (params or {},)
    if begin or commit:  # interpolated here, so the frame's statements pass through untouched
        query = b"".join([b"BEGIN;\n" if begin else b"", cursor.mogrify(query, params or {}),
                          b";\nCOMMIT" if commit else b""])
        arguments = ()
    if statement is None:
        cursor.execute(query, *arguments)
        return cursor
    _ensure_prepared(cursor, statement)
    try:
        cursor.execute(query, *arguments)
    except (psycopg2.errors.InvalidSqlStatementName, psycopg2.errors.FeatureNotSupported) as exc:
        raise _stale(cursor, statement.name, exc) from None
    return cursor
