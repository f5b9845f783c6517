"""The second wall (migration 0023): PostgreSQL's row-level security on every tenant's table.
A role that is not a superuser (the CI's connection is one, and a superuser passes every policy),
once its transaction names tenant a with SET LOCAL lamplighter.tenant, reads, changes and deletes
only a's rows, and cannot write a row of b's, with no tenant filter in its queries at all. A
session that names no tenant (the platform's own processes) sees every row, as before."""
from __future__ import annotations

import uuid

import psycopg2
import psycopg2.errors
import pytest

from tests.conftest import with_database
from tests.integration.test_tenancy import NOT_TENANT_OWNED, _tenant_tables
from tests.sql_roles import create_login, drop_login

# A tenant's tables: tenant_id with a foreign key to the tenants (migration 0023 finds them so).
TENANTS_TABLES = """
    SELECT n.nspname || '.' || c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE n.nspname IN ('lamplighter', 'dramatiq') AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND EXISTS (SELECT FROM pg_constraint co WHERE co.conrelid = c.oid AND co.contype = 'f'
                  AND co.confrelid = 'lamplighter.tenants'::regclass AND a.attnum = ANY (co.conkey))"""

# One row of each tenant's table, for %(tenant)s; %(n)s keeps unique columns apart. A tenant's table
# added by a migration needs its row here (a test below says so), so the probe covers it.
ROW_OF = {
    "lamplighter.users": "INSERT INTO lamplighter.users (email, display_name, role, tenant_id) "
                         "VALUES ('u' || %(n)s || '@example.com', 'U', 'viewer', %(tenant)s)",
    "lamplighter.api_tokens": "INSERT INTO lamplighter.api_tokens (name, secret_hash, display_prefix, scopes, "
                              "tenant_id, owner, created_by, expires_at) VALUES ('t', md5(%(n)s::text) "
                              "|| md5(%(n)s::text), 'llt_', '{jobs:read}', %(tenant)s, 'o', 'test', "
                              "now() + interval '1 day')",
    "lamplighter.documents": "INSERT INTO lamplighter.documents (tenant_id, name, size_bytes, file_key, sha256, "
                             "retention_until, uploaded_by) VALUES (%(tenant)s, 'd', 1, 'key-' || %(n)s, 'x', "
                             "now() + interval '1 day', 'u')",
    "lamplighter.tenant_quotas": "INSERT INTO lamplighter.tenant_quotas (tenant_id, max_documents, max_bytes) "
                                 "VALUES (%(tenant)s, 10, 10)",
    "lamplighter.billing_usage_reports": "INSERT INTO lamplighter.billing_usage_reports (tenant_id, period, "
                                         "idempotency_key, documents_stored, bytes_stored, documents_uploaded) "
                                         "VALUES (%(tenant)s, '2026-12-01'::date + %(n)s, 'k' || %(n)s, 1, 1, 1)",
    "lamplighter.webhook_endpoints": "INSERT INTO lamplighter.webhook_endpoints (tenant_id, url, secret) "
                                     "VALUES (%(tenant)s, 'https://example.com/hook', 'enc:v1:x')",
    "lamplighter.webhook_events": "INSERT INTO lamplighter.webhook_events (tenant_id, event_type, payload) "
                                  "VALUES (%(tenant)s, 'document.classified', '{}')",
    "lamplighter.webhook_deliveries": "INSERT INTO lamplighter.webhook_deliveries (tenant_id, event_id, endpoint_id) "
                                      "VALUES (%(tenant)s, %(event)s, %(endpoint)s)",
    "lamplighter.licenses": "INSERT INTO lamplighter.licenses (tenant_id, plan, seats, expires_at) "
                            "VALUES (%(tenant)s, 'team', 5, now() + interval '1 year')",
    "lamplighter.integrations": "INSERT INTO lamplighter.integrations (tenant_id, provider_id, name, access_token, "
                                "expires_at) VALUES (%(tenant)s, %(provider)s, 'i' || %(n)s, 'enc:v1:x', now())",
}
PLATFORM_ROWS = ("lamplighter.users", "lamplighter.api_tokens")  # tenant_id NULL: the deployment's own


@pytest.fixture
def probe(database_url, sql):
    """A role that is neither superuser nor BYPASSRLS nor the tables' owner, with the grants a
    tenant-facing service would get on the tenants' tables; the test SETs ROLE to it."""
    role = f"lamplighter_rls_probe_{uuid.uuid4().hex[:10]}"
    sql(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS")
    sql(f"GRANT USAGE ON SCHEMA lamplighter, dramatiq TO {role}")
    sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(sorted(ROW_OF))} TO {role}")
    sql(f"GRANT SELECT ON lamplighter.credentials, lamplighter.tenants TO {role}")
    sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA lamplighter TO {role}")
    yield role
    sql(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    sql(f"DROP OWNED BY {role}")
    sql(f"DROP ROLE {role}")


@pytest.fixture
def two_tenants(database_url, sql):
    """Tenants a and b with a row in every tenant's table (two in users and api_tokens, plus a
    platform row there); returns the ids each tenant's rows need."""
    sql("INSERT INTO lamplighter.tenants (id, name) VALUES ('a', 'A'), ('b', 'B')")
    [(provider,)] = sql("INSERT INTO lamplighter.cloud_providers (name, token_url, userinfo_url, files_url, client_id, "
                        "client_secret) VALUES ('drive', 'https://p/t', 'https://p/u', 'https://p/f', 'c', 'enc:v1:x') "
                        "RETURNING id")
    params, n = {}, 0
    for tenant in ("a", "b"):
        params[tenant] = {"tenant": tenant, "provider": provider}
        for table, insert in ROW_OF.items():
            if table == "lamplighter.webhook_deliveries":
                [(params[tenant]["event"],)] = sql("SELECT id FROM lamplighter.webhook_events WHERE tenant_id = %s",
                                                   (tenant,))
                [(params[tenant]["endpoint"],)] = sql("SELECT id FROM lamplighter.webhook_endpoints "
                                                      "WHERE tenant_id = %s", (tenant,))
            for _ in range(2 if table in PLATFORM_ROWS else 1):
                n += 1
                sql(insert, {**params[tenant], "n": n})
    for table in PLATFORM_ROWS:
        n += 1
        sql(ROW_OF[table], {"tenant": None, "n": n})
    return params


def _walled(database_url, role, tenant):
    """A connection in a transaction as ``role``, with the tenant named (None: no tenant)."""
    conn = psycopg2.connect(database_url)
    cur = conn.cursor()
    cur.execute(f"SET LOCAL ROLE {role}")
    if tenant is not None:
        cur.execute("SET LOCAL lamplighter.tenant = %s", (tenant,))
    return conn, cur


def _tenants_seen(cur, table):
    cur.execute(f"SELECT tenant_id FROM {table}")
    return sorted(row[0] or "(platform)" for row in cur.fetchall())


def test_every_tenants_table_has_the_wall_forced_and_the_labelled_tables_none(database_url, sql):
    tenants_tables = {name for (name,) in sql(TENANTS_TABLES)}
    views = {name for (name,) in sql("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n "
                                     "ON n.oid = c.relnamespace WHERE c.relkind = 'v'")}
    # The same tables test_tenancy.py calls a tenant's: every table with a tenant_id but the labels.
    assert tenants_tables == _tenant_tables(sql) - set(NOT_TENANT_OWNED) - views
    assert set(ROW_OF) == tenants_tables, "each tenant's table needs a row in ROW_OF, so the probe below covers it"
    walls = {table: (enabled, forced, policies) for table, enabled, forced, policies in sql(
        "SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity, "
        "       (SELECT array_agg(concat_ws(' ', p.polname, p.polcmd, p.polpermissive, p.polroles = '{0}', "
        "                  pg_get_expr(p.polqual, p.polrelid) = pg_get_expr(p.polwithcheck, p.polrelid))) "
        "        FROM pg_policy p WHERE p.polrelid = c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('lamplighter', 'dramatiq') AND c.relkind IN ('r', 'p')")}
    missing = {table: walls[table] for table in tenants_tables
               if walls[table] != (True, True, ["tenant_wall * t t t"])}
    assert missing == {}, ("each tenant's table needs row-level security enabled and forced, and the one policy "
                           "tenant_wall for every command and role, the same test for reads and writes "
                           "(SELECT lamplighter.tenant_wall_v1('<table>') in its migration); another "
                           "permissive policy would widen it")
    # The labels stay unwalled: the queue is the hot path, and job_history, audit_log and
    # notifications keep rows of tenants this database does not have.
    assert {table: walls[table][:2] for table in NOT_TENANT_OWNED} == {table: (False, False)
                                                                       for table in NOT_TENANT_OWNED}


def test_a_tenants_role_reads_changes_and_deletes_only_its_tenants_rows(database_url, sql, probe, two_tenants):
    before = {table: sql(f"SELECT tenant_id, count(*) FROM {table} GROUP BY 1 ORDER BY 1 NULLS LAST")
              for table in ROW_OF}
    for table in ROW_OF:
        conn, cur = _walled(database_url, probe, "a")
        try:
            a_rows = len(_tenants_seen(cur, table))
            assert _tenants_seen(cur, table) == ["a"] * a_rows and a_rows >= 1, table
            cur.execute(f"UPDATE {table} SET tenant_id = tenant_id")
            assert cur.rowcount == a_rows, f"{table}: an UPDATE with no WHERE reached another tenant's rows"
            cur.execute(f"DELETE FROM {table}")
            assert cur.rowcount == a_rows, f"{table}: a DELETE with no WHERE reached another tenant's rows"
            cur.execute("RESET ROLE")  # the superuser, in the same transaction: what is left
            cur.execute(f"SELECT tenant_id, count(*) FROM {table} GROUP BY 1 ORDER BY 1 NULLS LAST")
            assert cur.fetchall() == [row for row in before[table] if row[0] != "a"], table
        finally:
            conn.rollback()
            conn.close()


def test_a_tenants_role_cannot_write_a_row_of_another_tenant(database_url, sql, probe, two_tenants):
    for table, insert in ROW_OF.items():
        conn, cur = _walled(database_url, probe, "a")
        try:
            cur.execute("SAVEPOINT s")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
                cur.execute(insert, {**two_tenants["b"], "n": 1000})
            cur.execute("ROLLBACK TO SAVEPOINT s")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
                cur.execute(f"UPDATE {table} SET tenant_id = 'b'")  # moving its own rows over
            cur.execute("ROLLBACK TO SAVEPOINT s")
            if table in PLATFORM_ROWS:
                with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
                    cur.execute(insert, {"tenant": None, "n": 1001})
                cur.execute("ROLLBACK TO SAVEPOINT s")
            cur.execute(f"DELETE FROM {table}")  # its own rows (unique keys: one quota, one delivery)
            cur.execute(insert, {**two_tenants["a"], "n": 1002})  # its own tenant's: the grants allow it
            assert cur.rowcount == 1
        finally:
            conn.rollback()
            conn.close()


def test_the_probe_sees_through_a_missing_wall_and_a_session_naming_no_tenant_sees_every_row(
        database_url, sql, probe, two_tenants):
    everyone = {table: sorted(t or "(platform)" for (t,) in sql(f"SELECT tenant_id FROM {table}")) for table in ROW_OF}
    assert all({"a", "b"} <= set(seen) for seen in everyone.values())  # the superuser sees both
    conn, cur = _walled(database_url, probe, None)
    try:  # no tenant named: the platform's view, every row (the platform rows of users and tokens too)
        assert {table: _tenants_seen(cur, table) for table in ROW_OF} == everyone
    finally:
        conn.rollback()
        conn.close()
    conn, cur = _walled(database_url, probe, "a")
    try:  # the wall down on one table, in this transaction only: the probe would see b's rows
        cur.execute("RESET ROLE")
        cur.execute("ALTER TABLE lamplighter.documents DISABLE ROW LEVEL SECURITY")
        cur.execute(f"SET LOCAL ROLE {probe}")
        assert _tenants_seen(cur, "lamplighter.documents") == ["a", "b"]
        assert _tenants_seen(cur, "lamplighter.licenses") == ["a"]
    finally:
        conn.rollback()
        conn.close()


def test_the_credentials_view_reads_the_tokens_as_the_querying_role(database_url, sql, probe, two_tenants):
    assert sorted(t or "(platform)" for (t,) in sql("SELECT tenant_id FROM lamplighter.credentials")) == [
        "(platform)", "a", "a", "b", "b"]
    conn, cur = _walled(database_url, probe, "b")
    try:
        assert _tenants_seen(cur, "lamplighter.credentials") == ["b", "b"]
    finally:
        conn.rollback()
        conn.close()


def test_tenant_transaction_walls_the_storage_calls_made_in_it(database_url, sql, two_tenants):
    """storage.tenants.tenant_transaction on the application's own connection, as a role that is not
    a superuser: a storage function asked for every tenant's users gets only the named tenant's."""
    from storage import connection
    from storage import users as user_rows
    from storage.tenants import TenantScope, tenant_transaction
    from tests.conftest import use_database

    every = TenantScope.every()
    assert {user.tenant_id for user in user_rows.list_users(scope=every)} == {"a", "b", None}
    login = create_login(database_url, "GRANT USAGE ON SCHEMA lamplighter TO {role}",
                         "GRANT SELECT ON lamplighter.users TO {role}")
    try:
        use_database(login.url)
        with tenant_transaction(TenantScope.of("a")):
            assert {user.tenant_id for user in user_rows.list_users(scope=every)} == {"a"}
        # The setting ended with the transaction: the same connection is unwalled again.
        db = connection.init_database()
        assert db.execute_sql("SELECT coalesce(current_setting('lamplighter.tenant', true), '')").fetchone() == ("",)
        assert {user.tenant_id for user in user_rows.list_users(scope=every)} == {"a", "b", None}
        with tenant_transaction(every):
            assert {user.tenant_id for user in user_rows.list_users(scope=every)} == {"a", "b", None}
        with pytest.raises(ValueError):
            with tenant_transaction(TenantScope(tenant_id=None)):
                pass
        with connection.transaction(), pytest.raises(RuntimeError):
            with tenant_transaction(TenantScope.of("a")):
                pass
    finally:
        connection.reset()
        drop_login(database_url, login)
        use_database(database_url)


def test_a_backup_by_a_role_the_wall_applies_to_dumps_every_tenants_rows(database_url, sql, two_tenants, tmp_path):
    """pg_dump turns row_security off, which fails for a role the policies apply to: a deployment
    whose owner is not a superuser (FORCE walls the owner too). The backup turns it on instead,
    and names no tenant, so every row is dumped."""
    from storage import dumps

    login = create_login(database_url, "GRANT USAGE ON SCHEMA lamplighter, dramatiq TO {role}",
                         "GRANT SELECT ON ALL TABLES IN SCHEMA lamplighter, dramatiq TO {role}",
                         "GRANT SELECT ON ALL SEQUENCES IN SCHEMA lamplighter, dramatiq TO {role}",
                         "ALTER TABLE lamplighter.documents OWNER TO {role}")
    try:
        tables = ["lamplighter.documents", "lamplighter.users"]
        dumped = dumps.dump(login.url, tmp_path / "walled.dump", tables=tables)
        assert dumped.row_counts == {"lamplighter.documents": 2, "lamplighter.users": 5}
        restored = f"lamplighter_t_{uuid.uuid4().hex[:12]}"
        sql(f'CREATE DATABASE "{restored}"')
        try:
            url = with_database(database_url, restored)
            dumps.restore(tmp_path / "walled.dump", url, clean=False)
            assert dumps.counts_at(url, tables) == dumped.row_counts
        finally:
            sql(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
    finally:
        sql("ALTER TABLE lamplighter.documents OWNER TO CURRENT_USER")
        drop_login(database_url, login)


def test_under_the_wall_the_sign_in_lookup_keeps_its_index(database_url, sql, probe, two_tenants):
    """A condition applying a function that is not leakproof to a column (lower(email)) waits for
    the policy, so it cannot be an index condition for a role the wall applies to: the sign-in
    lookup compares the stored key (email_key) with plain equality instead. Planned as the probe,
    with enough users that a full scan would be the worse plan."""
    from storage.queries import queries

    sql("INSERT INTO lamplighter.users (email, display_name, role, tenant_id) "
        "SELECT 'bulk' || i || '@Example.com', 'B', 'viewer', 'a' FROM generate_series(1, 5000) AS i")
    sql("ANALYZE lamplighter.users")
    lookups = {"user_find_for_login": queries("users")["user_find_for_login"],
               "user_get_by_email": queries("users")["user_get_by_email"]}
    params = {"email": "BULK77@example.COM", "tenant_id": "a", "every_tenant": False}
    for tenant in (None, "a"):
        conn, cur = _walled(database_url, probe, tenant)
        try:
            for name, text in lookups.items():
                cur.execute(text, params)
                assert [row[1] for row in cur.fetchall()] == ["bulk77@Example.com"], name
                cur.execute("EXPLAIN " + text, params)
                plan = "\n".join(line for (line,) in cur.fetchall())
                assert "users_email_key_idx" in plan and "Seq Scan" not in plan, f"{name} as {tenant}:\n{plan}"
        finally:
            conn.rollback()
            conn.close()
