-- Row-level security on the tenants' tables: the second wall behind the application's tenant
-- filter (storage/tenants.py). A tenant's table is one whose tenant_id has a foreign key to
-- lamplighter.tenants (tests/integration/test_tenancy.py: NOT NULL, or platform rows with none
-- in users and api_tokens). The labelled tables (dramatiq.queue, job_history, audit_log,
-- notifications) have no such key and no wall: the queue's claims and finishes stay as they are.
--
-- The policy, tenant_wall, lets a session see and write:
--   * every row, when the session names no tenant: the platform's own processes (web, worker,
--     scheduler, release, CLI) connect as the tables' owner and name none, so they read and write
--     as before. FORCE makes the owner subject to the policy too (a superuser never is);
--   * only its tenant's rows once it names one, with SET LOCAL lamplighter.tenant = '<id>' (or
--     set_config('lamplighter.tenant', '<id>', true): transaction-scoped, safe behind a
--     transaction pooler). NULL-tenant platform rows of users and api_tokens are not its.
-- The expression is written inline, not in a function, so the planner sees
-- `tenant_id = current_setting(...)` (a stable expression an index can serve). Foreign keys and
-- their cascades are checked without it.
--
-- lamplighter.tenant_wall_v1(table) raises the wall on one table and is safe to run again: a
-- migration that adds a tenant's table calls it (a test fails for a tenant's table without it).
-- A partitioned table gets the wall on its parent, which is how its rows are reached.
CREATE OR REPLACE FUNCTION lamplighter.tenant_wall_v1(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tenant_rows CONSTANT text := 'coalesce(current_setting(''lamplighter.tenant'', true), '''') = '''' '
                                 'OR tenant_id = current_setting(''lamplighter.tenant'', true)';
    enabled boolean;
    forced boolean;
BEGIN
    SELECT relrowsecurity, relforcerowsecurity INTO enabled, forced FROM pg_class WHERE oid = target;
    -- Each ALTER takes the table's strongest lock: only when something changes.
    IF NOT enabled THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    END IF;
    IF NOT forced THEN
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = target AND polname = 'tenant_wall') THEN
        EXECUTE format('CREATE POLICY tenant_wall ON %s FOR ALL USING (%s) WITH CHECK (%s)',
                       target, tenant_rows, tenant_rows);
    END IF;
END $$;

SELECT lamplighter.tenant_wall_v1(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE n.nspname = 'lamplighter' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND EXISTS (SELECT FROM pg_constraint co
              WHERE co.conrelid = c.oid AND co.contype = 'f'
                AND co.confrelid = 'lamplighter.tenants'::regclass AND a.attnum = ANY (co.conkey))
ORDER BY c.oid;

-- A view reads its tables as its owner: the credentials view (api_tokens) would look past the
-- wall for a tenant's role whenever the owner is a superuser. From PostgreSQL 15 it reads them as
-- the querying role instead (14 has no such option: give a tenant's role no grant on the view).
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        ALTER VIEW lamplighter.credentials SET (security_invoker = true);
    END IF;
END $$;

-- Under the wall, a condition that applies a function not marked leakproof to a column, such as
-- lower(email), is checked only after the policy, so it can no longer be an index condition: the
-- sign-in lookup became a full scan of the users (20,000 users: 0.04 -> 47 ms, measured as an
-- owner that is not a superuser, the usual case on managed PostgreSQL). Lookups use a stored key
-- compared with plain text equality (leakproof), which its index serves under the wall.
-- Uniqueness stays with users_email_idx on lower(email), the previous release's ON CONFLICT
-- target; this index is for lookups only.
ALTER TABLE lamplighter.users ADD COLUMN IF NOT EXISTS email_key text GENERATED ALWAYS AS (lower(email)) STORED;
CREATE INDEX IF NOT EXISTS users_email_key_idx ON lamplighter.users (email_key);
