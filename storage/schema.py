"""Schema migrations: the release step (`lamplighter migrate`) and the readiness check.

After the migrations it makes sure the `lamplighter_enqueue` role exists and may execute SQL
enqueue (storage/enqueue_role.py), on every run: a role dropped or a database restored elsewhere
gets it back at the next release.

Migrations run under a transaction-scoped advisory lock held on a dedicated connection, so two
release steps started together apply each migration once; the second waits, then finds nothing
left to do.
"""
from __future__ import annotations

import structlog
from playhouse.migrations import Runner

from storage import connection, enqueue_role
from storage.migrations import DIRECTORY

log = structlog.get_logger(__name__)

HISTORY_TABLE = "schema_migrations"
SCHEMA = "lamplighter"
_MIGRATION_LOCK = 0x6C616D70  # "lamp"


def _runner(db) -> Runner:
    return Runner(db, directory=str(DIRECTORY), table_name=HISTORY_TABLE, schema=SCHEMA)


def migrate() -> list[str]:
    """Apply pending migrations; return their names. Safe to run again and concurrently."""
    db = connection.init_database()
    with db.connection_context():
        # The lock first: CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent one (two
        # release steps on a new database: "duplicate key value violates ... pg_namespace").
        db.execute_sql("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        db.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        try:
            applied = _runner(db).up()
            enqueue_role.ensure(db)
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    for name in applied:
        log.info("migration_applied", migration=name)
    log.info("migrations_current", applied=len(applied))
    return applied


def pending() -> list[str]:
    """Names of migrations not yet applied (``/readyz`` reports them)."""
    db = connection.init_database()
    exists = db.execute_sql(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{HISTORY_TABLE}",)
    ).fetchone()[0]
    runner = _runner(db)
    if not exists:
        return [m.name for m in runner.migrations()]
    return [m.name for m in runner.status() if m.applied is None and m.path is not None]
