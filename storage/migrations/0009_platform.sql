-- Platform primitives (issue 15): tenants, users with roles, API tokens with scopes, dashboard
-- sessions, and one audit log. Number 0010 is left to the queue engine; the two are independent.

-- ---- tenants --------------------------------------------------------------------------------
-- The id is the text other services already put in a job's tenant_id (dramatiq.queue has no
-- foreign key to this table: see README "Users, tokens and audit"). What a billing status
-- allows is decided in one place, domain/tenants.py; nothing else reads these strings.
CREATE TABLE IF NOT EXISTS lamplighter.tenants (
    id                    text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name                  text NOT NULL CHECK (btrim(name) <> ''),
    billing_status        text NOT NULL DEFAULT 'active'
                          CHECK (billing_status IN ('active', 'grace', 'read_only', 'suspended')),
    grace_period_ends_at  timestamptz,
    created_at            timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at            timestamptz NOT NULL DEFAULT lamplighter.now(),
    CHECK ((billing_status = 'grace') = (grace_period_ends_at IS NOT NULL))
);

-- ---- users ----------------------------------------------------------------------------------
-- People who sign in to the dashboard. password_hash is an argon2id PHC string (argon2-cffi);
-- NULL: no password set, the user cannot sign in with one. tenant_id NULL: a platform user.
CREATE TABLE IF NOT EXISTS lamplighter.users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    display_name   text NOT NULL,
    password_hash  text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    role           text NOT NULL CHECK (role IN ('viewer', 'operator', 'superadmin', 'enqueue')),
    tenant_id      text REFERENCES lamplighter.tenants (id),
    disabled_at    timestamptz,
    last_login_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at     timestamptz NOT NULL DEFAULT lamplighter.now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_idx ON lamplighter.users (lower(email));
CREATE INDEX IF NOT EXISTS users_tenant_idx ON lamplighter.users (tenant_id) WHERE tenant_id IS NOT NULL;

-- ---- API tokens -----------------------------------------------------------------------------
-- A token is llt_ followed by 256 random bits (base64url); it is shown once, and only its
-- SHA-256 (hex) is kept. display_prefix (llt_ and 4 more characters) tells tokens apart in a
-- listing. actors / queues: for the enqueue scope, the only actors or queues it may enqueue
-- for (NULL: any). owner: who is told when it expires (the credentials view).
CREATE TABLE IF NOT EXISTS lamplighter.api_tokens (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (btrim(name) <> ''),
    secret_hash     text NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    display_prefix  text NOT NULL,
    scopes          text[] NOT NULL CHECK (cardinality(scopes) > 0),
    actors          text[],
    queues          text[],
    tenant_id       text REFERENCES lamplighter.tenants (id),
    owner           text NOT NULL,
    created_by      text NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoked_by      text,
    last_used_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT lamplighter.now()
);
CREATE INDEX IF NOT EXISTS api_tokens_tenant_idx ON lamplighter.api_tokens (tenant_id) WHERE tenant_id IS NOT NULL;
-- tokens.prune_expired: tokens by the moment they stopped working.
CREATE INDEX IF NOT EXISTS api_tokens_ended_idx
    ON lamplighter.api_tokens ((least(expires_at, revoked_at)))
    WHERE expires_at IS NOT NULL OR revoked_at IS NOT NULL;

-- ---- dashboard sessions ---------------------------------------------------------------------
-- The cookie holds a random session id; the table holds its SHA-256 (hex) only.
CREATE TABLE IF NOT EXISTS lamplighter.sessions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash    text NOT NULL UNIQUE CHECK (session_hash ~ '^[0-9a-f]{64}$'),
    user_id         bigint NOT NULL REFERENCES lamplighter.users (id) ON DELETE CASCADE,
    source_address  inet,
    created_at      timestamptz NOT NULL DEFAULT lamplighter.now(),
    last_seen_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON lamplighter.sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires_idx ON lamplighter.sessions (expires_at);

-- ---- expiring credentials -------------------------------------------------------------------
-- Everything that expires, for the admin jobs' expiry notifications: API tokens today; client
-- secrets and certificates join with a UNION ALL when their tables come.
CREATE OR REPLACE VIEW lamplighter.credentials AS
SELECT 'api_token'::text AS kind, t.id::text AS credential_id, t.name, t.owner, t.tenant_id, t.expires_at
FROM lamplighter.api_tokens t
WHERE t.expires_at IS NOT NULL AND t.revoked_at IS NULL;

-- ---- the audit log --------------------------------------------------------------------------
-- One append-only record of what a person or a service did: operator actions (job events
-- included), credentials, users, tenants, logins. actor is 'user:<id>', 'token:<id>',
-- 'cli:<os user>@<host>', 'system:<job>' or 'worker:<id>'. details never hold a secret
-- (domain/audit.py refuses secret-looking keys).
--
-- Partitioned by month (UTC) so that archiving detaches whole months. A DEFAULT partition takes
-- any row whose month has no partition yet, so an insert never fails; partitions for this month
-- and the next two are created by the release step and daily by audit.create_partitions, and a
-- month created later takes its rows over from the default partition.
CREATE SEQUENCE IF NOT EXISTS lamplighter.audit_log_id_seq AS bigint;
CREATE TABLE IF NOT EXISTS lamplighter.audit_log (
    id              bigint NOT NULL DEFAULT nextval('lamplighter.audit_log_id_seq'),
    at              timestamptz NOT NULL DEFAULT lamplighter.now(),
    actor           text NOT NULL,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_type     text,
    target_id       text,
    tenant_id       text,
    source_address  inet,
    details         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE lamplighter.audit_log_id_seq OWNED BY lamplighter.audit_log.id;
CREATE TABLE IF NOT EXISTS lamplighter.audit_log_default PARTITION OF lamplighter.audit_log DEFAULT;
-- `lamplighter audit`: newest first, alone or by actor or tenant; a job's events by job id.
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON lamplighter.audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_actor_idx ON lamplighter.audit_log (actor, at);
CREATE INDEX IF NOT EXISTS audit_log_tenant_idx ON lamplighter.audit_log (tenant_id, at) WHERE tenant_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_log_target_idx ON lamplighter.audit_log (target_type, target_id, at);

-- Rows are never changed or deleted: archiving detaches a month's partition instead. The row
-- trigger is cloned onto every partition; TRUNCATE is refused on the log as a whole (a
-- partition's own TRUNCATE or DROP, like archiving, takes its owner's deliberate DDL).
CREATE OR REPLACE FUNCTION lamplighter.audit_log_refuse_change_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lamplighter.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'archive whole months with lamplighter.audit_partition_detach_v1(month)';
END
$$;
DROP TRIGGER IF EXISTS audit_log_append_only ON lamplighter.audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON lamplighter.audit_log
    FOR EACH ROW EXECUTE FUNCTION lamplighter.audit_log_refuse_change_v1();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON lamplighter.audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON lamplighter.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION lamplighter.audit_log_refuse_change_v1();

-- The month's partition (lamplighter.audit_log_yYYYYmMM), created if missing. Created apart and
-- then attached, which does not block inserts into the log (CREATE TABLE ... PARTITION OF
-- would). Rows of that month already in the default partition move into it, unchanged: the old
-- default partition is detached, a new one attached, its rows inserted again, and the old one
-- dropped, so no row is ever updated or deleted. Serialised by an advisory lock (the release
-- step and the daily job may run at once). Its locks are waited for 5 s at most: queued behind a
-- long transaction, the DDL would hold up every insert into the log; the daily job tries again.
CREATE OR REPLACE FUNCTION lamplighter.audit_partition_create_v1(p_month date)
RETURNS TABLE (partition_name text, created boolean, moved_rows bigint)
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_from  timestamptz := date_trunc('month', p_month::timestamp)::timestamp AT TIME ZONE 'UTC';
    v_to    timestamptz := (date_trunc('month', p_month::timestamp) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    v_name  text := 'audit_log_' || to_char(date_trunc('month', p_month::timestamp), '"y"YYYY"m"MM');
    v_moved bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('lamplighter.audit_log partitions'));
    partition_name := v_name;
    IF to_regclass(format('lamplighter.%I', v_name)) IS NOT NULL THEN
        created := false; moved_rows := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE lamplighter.%I (LIKE lamplighter.audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
    IF EXISTS (SELECT 1 FROM lamplighter.audit_log_default WHERE at >= v_from AND at < v_to) THEN
        ALTER TABLE lamplighter.audit_log DETACH PARTITION lamplighter.audit_log_default;
        ALTER TABLE lamplighter.audit_log_default RENAME TO audit_log_default_moving;
        CREATE TABLE lamplighter.audit_log_default PARTITION OF lamplighter.audit_log DEFAULT;
        EXECUTE format('ALTER TABLE lamplighter.audit_log ATTACH PARTITION lamplighter.%I FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_from, v_to);
        INSERT INTO lamplighter.audit_log SELECT * FROM lamplighter.audit_log_default_moving;
        GET DIAGNOSTICS v_moved = ROW_COUNT;
        DROP TABLE lamplighter.audit_log_default_moving;
    ELSE
        EXECUTE format('ALTER TABLE lamplighter.audit_log ATTACH PARTITION lamplighter.%I FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_from, v_to);
    END IF;
    created := true; moved_rows := v_moved;
    RETURN NEXT;
END
$$;

-- This month's partition and the next p_months_ahead months' (the release step and the daily
-- job call it); returns the partitions it created.
CREATE OR REPLACE FUNCTION lamplighter.audit_partitions_ensure_v1(p_months_ahead integer)
RETURNS TABLE (partition_name text, moved_rows bigint)
LANGUAGE sql AS $$
    SELECT p.partition_name, p.moved_rows
    FROM generate_series(0, greatest(p_months_ahead, 0)) AS ahead(n),
         LATERAL lamplighter.audit_partition_create_v1(
             (date_trunc('month', lamplighter.now() AT TIME ZONE 'UTC') + ahead.n * interval '1 month')::date) AS p
    WHERE p.created
$$;

-- Archiving: the month's partition leaves the log and stays a table of its own
-- (lamplighter.audit_log_yYYYYmMM), to be exported and dropped. NULL when that month has no
-- partition. Refuses this month and later ones, which are still being written. Detaching locks
-- the log briefly; as above, its lock is waited for 5 s at most.
CREATE OR REPLACE FUNCTION lamplighter.audit_partition_detach_v1(p_month date)
RETURNS text
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_name text := 'audit_log_' || to_char(date_trunc('month', p_month::timestamp), '"y"YYYY"m"MM');
BEGIN
    IF date_trunc('month', p_month::timestamp) >= date_trunc('month', lamplighter.now() AT TIME ZONE 'UTC') THEN
        RAISE EXCEPTION 'audit month % is not over yet; only past months are archived', to_char(p_month, 'YYYY-MM')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('lamplighter.audit_log partitions'));
    IF NOT EXISTS (SELECT 1 FROM pg_inherits i
                   WHERE i.inhparent = 'lamplighter.audit_log'::regclass
                     AND i.inhrelid = to_regclass(format('lamplighter.%I', v_name))) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('ALTER TABLE lamplighter.audit_log DETACH PARTITION lamplighter.%I', v_name);
    RETURN 'lamplighter.' || v_name;
END
$$;

-- Dropping an archived month: its detached table goes (once exported). A month still in the
-- log is refused: detach it first. NULL when there is no such table.
CREATE OR REPLACE FUNCTION lamplighter.audit_archive_drop_v1(p_month date)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := 'audit_log_' || to_char(date_trunc('month', p_month::timestamp), '"y"YYYY"m"MM');
    v_table regclass := to_regclass(format('lamplighter.%I', v_name));
BEGIN
    IF v_table IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = v_table) THEN
        RAISE EXCEPTION 'audit month % is still in the log; archive (detach) it first', to_char(p_month, 'YYYY-MM')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('DROP TABLE lamplighter.%I', v_name);
    RETURN 'lamplighter.' || v_name;
END
$$;

-- ---- job events are audit rows --------------------------------------------------------------
-- lamplighter.job_events was a table of its own (redrives, cancels, unique-key conflicts,
-- shutdown hand-backs). It becomes a view over the audit log: one record, not two. Its writers
-- (storage/sql/jobs.sql, lamplighter.job_insert_unique, and the previous release's workers
-- during a deploy) insert into the view as before; the trigger below turns each row into an
-- audit row: action 'job.<event>', target ('job', id), the job's tenant. Job events now outlive
-- their job (pruning deletes jobs and history, not the record of who acted on them) and leave
-- with their month's partition.
DO $$
DECLARE
    v_first date;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'lamplighter' AND c.relname = 'job_events' AND c.relkind = 'r') THEN
        LOCK TABLE lamplighter.job_events IN ACCESS EXCLUSIVE MODE;
        SELECT min(at AT TIME ZONE 'UTC')::date INTO v_first FROM lamplighter.job_events;
        IF v_first IS NOT NULL THEN
            PERFORM lamplighter.audit_partition_create_v1(m::date)
            FROM generate_series(date_trunc('month', v_first::timestamp), date_trunc('month', lamplighter.now() AT TIME ZONE 'UTC'),
                                 interval '1 month') AS m;
        END IF;
        INSERT INTO lamplighter.audit_log (at, actor, action, target_type, target_id, tenant_id, details)
        SELECT e.at, coalesce(e.requested_by, 'unknown'), 'job.' || e.event, 'job', e.job_id::text, q.tenant_id,
               e.detail
        FROM lamplighter.job_events e
        LEFT JOIN dramatiq.queue q ON q.message_id = e.job_id
        ORDER BY e.id;
        DROP TABLE lamplighter.job_events;
    END IF;
END
$$;

CREATE OR REPLACE VIEW lamplighter.job_events AS
SELECT a.id, a.target_id::uuid AS job_id, a.at, substr(a.action, 5) AS event, a.actor AS requested_by,
       a.details AS detail
FROM lamplighter.audit_log a
WHERE a.target_type = 'job';

CREATE OR REPLACE FUNCTION lamplighter.job_event_record_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- The previous release's pruning deletes a job's events with the job: they stay in the
        -- audit log instead.
        RETURN NULL;
    END IF;
    INSERT INTO lamplighter.audit_log (actor, action, target_type, target_id, tenant_id, details)
    VALUES (coalesce(NEW.requested_by, 'unknown'), 'job.' || NEW.event, 'job', NEW.job_id::text,
            (SELECT q.tenant_id FROM dramatiq.queue q WHERE q.message_id = NEW.job_id),
            coalesce(NEW.detail, '{}'))
    RETURNING id, at INTO NEW.id, NEW.at;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS job_events_record ON lamplighter.job_events;
CREATE TRIGGER job_events_record INSTEAD OF INSERT OR DELETE ON lamplighter.job_events
    FOR EACH ROW EXECUTE FUNCTION lamplighter.job_event_record_v1();

-- This month's partition and the next two: "a partition for next month exists after migrate".
SELECT count(*) FROM lamplighter.audit_partitions_ensure_v1(2);
