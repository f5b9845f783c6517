"""The `lamplighter_enqueue` role: what a service needs to enqueue from SQL, and nothing more.

The release step (storage.schema.migrate) makes sure, every time it runs, that the role exists
(NOLOGIN; an administrator grants it to service roles: ``GRANT lamplighter_enqueue TO my_service``)
and that it may use the lamplighter schema and execute ``lamplighter.enqueue`` (SECURITY DEFINER,
0011_sql_enqueue_v1.sql), while PUBLIC may not execute that function.

Roles belong to the cluster, grants to a database: the role is created once per server (by the
first release step of any database on it), the grants once per database. Creating the role needs
CREATEROLE (or a superuser, as on the embedded server and a self-hosted server's postgres user);
a migrating role without it (managed databases) gets a warning and the release continues: an
administrator creates the role once, and the next release step grants it.
"""
from __future__ import annotations

import psycopg2
import structlog

log = structlog.get_logger(__name__)

ROLE = "lamplighter_enqueue"
ENQUEUE_FUNCTION = ("lamplighter.enqueue(text, jsonb, text, interval, integer, text, text, text, "
                    "timestamptz)")


def _grants(role: str) -> list[str]:
    return [
        # Again here, not only in the migration: a function recreated by hand (or restored from a
        # dump taken without privileges) is executable by PUBLIC.
        f"REVOKE ALL ON FUNCTION {ENQUEUE_FUNCTION} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA lamplighter TO {role}",
        f"GRANT EXECUTE ON FUNCTION {ENQUEUE_FUNCTION} TO {role}",
    ]


def ensure(db, role: str = ROLE) -> bool:
    """Create the role if missing and grant it SQL enqueue. Idempotent, and safe while another
    database's release step on the same server does the same. Returns False (after a warning)
    when the role is missing and this login may not create it."""
    with db.atomic():
        cur = db.cursor()
        if not _role_exists(cur, role) and not _create_role(cur, role):
            return False
        for statement in _grants(role):
            cur.execute(statement)
    log.info("enqueue_role_granted", role=role, function=ENQUEUE_FUNCTION)
    return True


def _role_exists(cur, role: str) -> bool:
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s)", (role,))
    return cur.fetchone()[0]


def _create_role(cur, role: str) -> bool:
    cur.execute("SAVEPOINT enqueue_role")
    try:
        cur.execute(f"CREATE ROLE {role} NOLOGIN")
    except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
        # Created meanwhile by a release step of another database on this server.
        cur.execute("ROLLBACK TO SAVEPOINT enqueue_role")
    except psycopg2.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT enqueue_role")
        log.warning("enqueue_role_not_created", role=role,
                    reason="the migrating role may not create roles (no CREATEROLE)",
                    fix=f"as an administrator: CREATE ROLE {role} NOLOGIN; then run the release step "
                        "again (`lamplighter migrate`), which grants it; until then only the "
                        "migrating role may call lamplighter.enqueue()")
        return False
    cur.execute("RELEASE SAVEPOINT enqueue_role")
    return True
