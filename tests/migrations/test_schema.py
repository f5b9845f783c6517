"""Migrating an empty database gives exactly the declared schema, and migrating is idempotent
and safe to run concurrently (two release steps at once)."""
import threading
import uuid

import psycopg2

from storage import connection, schema
from tests.conftest import use_database
from tests.migrations.catalog import DECLARED, describe


def test_empty_database_migrates_to_declared_schema(database_url):
    # database_url is a copy of the template, which `schema.migrate()` built from empty.
    conn = psycopg2.connect(database_url)
    try:
        assert describe(conn) == DECLARED.read_text()
    finally:
        conn.close()


def test_migrate_again_applies_nothing_and_changes_nothing(database_url):
    before = describe(connection.raw_connection())
    assert schema.migrate() == []
    assert schema.pending() == []
    assert describe(connection.raw_connection()) == before


def test_concurrent_release_steps_apply_each_migration_once(server_url, sql):
    # A brand-new, empty database (not the template) migrated by two threads at once.
    sql("CREATE SCHEMA scratch")  # touch the fixture so the test DB exists
    name = f"lamplighter_concurrent_migrate_{uuid.uuid4().hex[:8]}"  # parallel runs on one server
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    from tests.conftest import with_database

    url = with_database(server_url, name)
    use_database(url)
    results, errors = [], []

    def release():
        try:
            # peewee keeps one connection per thread, so each thread is its own release step.
            results.append(schema.migrate())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=release) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    connection.reset()
    try:
        assert errors == []
        from storage.migrations import DIRECTORY

        every = sorted(p.stem for p in DIRECTORY.glob("[0-9]*.py"))
        assert sorted(results, key=len) == [[], every]
        conn = psycopg2.connect(url)
        assert describe(conn) == DECLARED.read_text()
        conn.close()
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
