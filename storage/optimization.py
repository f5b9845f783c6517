"""database.optimize's statements (queries in sql/optimization.sql; rules in
domain/optimization.py). Everything runs on one autocommit connection of its own, with a
lock_timeout, so a statement that would make workers queue behind it gives up instead."""
from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql as pgsql

from storage import connection
from storage.queries import rows, runner

execute = runner("optimization")


class LockTimeout(Exception):
    """The statement waited longer than the lock_timeout and gave up."""


class StatementFailed(Exception):
    """The statement failed for another reason (message without parameters)."""


@dataclass(frozen=True)
class IndexEstimate:
    index_oid: int
    index_name: str  # quoted, schema-qualified
    table_name: str
    index_bytes: int
    estimated_bloat: float
    measured: bool = False  # pgstatindex's figure rather than the catalog estimate


class Session:
    """An autocommit connection with ``lock_timeout`` set, used as a context manager."""

    def __init__(self, *, lock_timeout: float):
        self.lock_timeout = lock_timeout
        self.conn = None

    def __enter__(self) -> "Session":
        self.conn = connection.raw_connection("optimize")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.lock_timeout * 1000)}ms",))
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def _run(self, statement) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
        except psycopg2.errors.LockNotAvailable:
            raise LockTimeout(f"gave up after the {self.lock_timeout:g} s lock timeout") from None
        except psycopg2.Error as exc:
            raise StatementFailed((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None

    def analyze(self, table: str) -> None:
        schema, _, name = table.partition(".")
        self._run(pgsql.SQL("ANALYZE {}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(name)))

    def reindex_concurrently(self, index_name: str) -> None:
        """``index_name`` as the catalog query quoted it (schema-qualified)."""
        self._run(pgsql.SQL("REINDEX INDEX CONCURRENTLY {}").format(pgsql.SQL(_checked(index_name))))

    def drop_index_concurrently(self, index_name: str) -> None:
        self._run(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(pgsql.SQL(_checked(index_name))))

    def table_bloat(self, tables: list[str]) -> list[dict]:
        return rows(execute("optimization_table_bloat", {"tables": tables}, conn=self.conn))

    def index_estimates(self, tables: list[str]) -> list[IndexEstimate]:
        found = [IndexEstimate(**row) for row in
                 rows(execute("optimization_index_estimates", {"tables": tables}, conn=self.conn))]
        extension = execute("optimization_pgstattuple_schema", conn=self.conn).fetchall()
        if not extension:
            return found
        density_of = pgsql.SQL("SELECT avg_leaf_density FROM {}.pgstatindex(%s::oid::regclass)").format(
            pgsql.Identifier(extension[0][0]))
        measured = []
        for index in found:
            try:
                with self.conn.cursor() as cur:
                    cur.execute(density_of, (index.index_oid,))
                    [(density,)] = cur.fetchall()
            except psycopg2.Error:  # no privilege for pgstatindex: keep the estimate
                measured.append(index)
                continue
            bloat = 0.0 if density is None or math.isnan(density) else max(0.0, 1 - density / 90.0)
            measured.append(IndexEstimate(index.index_oid, index.index_name, index.table_name, index.index_bytes,
                                          bloat, measured=True))
        return measured

    def invalid_leftovers(self) -> list[str]:
        return [r["index_name"] for r in rows(execute("optimization_invalid_leftovers", conn=self.conn))]


def _checked(quoted_name: str) -> str:
    """A name the catalog quoted with quote_ident (schema.index): refuse anything else, since it
    goes into the statement as it is."""
    if "." not in quoted_name or ";" in quoted_name or "\n" in quoted_name:
        raise ValueError(f"not a quoted index name: {quoted_name!r}")
    return quoted_name
