-- Operations jobs (issue 22): the platform watching itself. Additive and idempotent.

-- ---- health checks ----------------------------------------------------------------------------
-- One row per monitoring.health_check run: every check's outcome in `checks` (name -> {ok,
-- message, ...}). `lamplighter health` reads the newest; a newest row older than twice the
-- interval means the checks themselves stopped running (workers or the scheduler are down).
CREATE TABLE IF NOT EXISTS lamplighter.health_checks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checked_at   timestamptz NOT NULL DEFAULT lamplighter.now(),
    ok           boolean NOT NULL,
    checks       jsonb NOT NULL,
    duration_ms  double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS health_checks_checked_at_idx ON lamplighter.health_checks (checked_at);

-- ---- performance samples ----------------------------------------------------------------------
-- monitoring.performance: per actor and interval (period_start, taken_at], from the attempts
-- that finished in it. Times in milliseconds; queue wait is started_at - available_at of the
-- attempt (known for a job's latest attempt, which is nearly every attempt).
CREATE TABLE IF NOT EXISTS lamplighter.perf_samples (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at      timestamptz NOT NULL,
    period_start  timestamptz NOT NULL,
    actor_name    text NOT NULL,
    queue_name    text NOT NULL,
    completed     integer NOT NULL,
    failed        integer NOT NULL,
    failure_rate  double precision NOT NULL,
    per_minute    double precision NOT NULL,
    run_p50_ms    double precision,
    run_p95_ms    double precision,
    run_p99_ms    double precision,
    wait_p50_ms   double precision,
    wait_p95_ms   double precision,
    CHECK (taken_at > period_start)
);
CREATE INDEX IF NOT EXISTS perf_samples_actor_idx ON lamplighter.perf_samples (actor_name, taken_at);
CREATE INDEX IF NOT EXISTS perf_samples_taken_at_idx ON lamplighter.perf_samples (taken_at);

-- The same run's whole-system figures: waiting jobs per queue and connections in use.
CREATE TABLE IF NOT EXISTS lamplighter.perf_system_samples (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at            timestamptz NOT NULL,
    connections_in_use  integer NOT NULL,
    queue_depths        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS perf_system_samples_taken_at_idx ON lamplighter.perf_system_samples (taken_at);

-- ---- backups ----------------------------------------------------------------------------------
-- One row per backups.create attempt.
--   running --dump ok, stored--> dumped --restore check: equal row counts--> verified
--      |                           '-- restore check fails --> unverified
--      '-- pg_dump failed or cut off (SIGTERM) --> failed            (never stored as good)
--   any --retention--> deleted (the file is gone; the row stays as a record)
-- row_counts: the key tables' counts in the very snapshot pg_dump read (--snapshot), so the
-- restore check compares like with like.
CREATE TABLE IF NOT EXISTS lamplighter.backups (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_key         text,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'failed', 'dumped', 'verified', 'unverified', 'deleted')),
    started_at       timestamptz NOT NULL DEFAULT lamplighter.now(),
    finished_at      timestamptz,
    verified_at      timestamptz,
    size_bytes       bigint,
    sha256           text,
    server_version   text,
    pg_dump_version  text,
    row_counts       jsonb,
    error            text,
    CHECK ((status = 'verified') = (verified_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS backups_started_at_idx ON lamplighter.backups (started_at);

-- ---- licenses ---------------------------------------------------------------------------------
-- A tenant's license or subscription. licenses.check marks the ones past expires_at expired,
-- sends the 30/7/1-day notices (domain/expiry.py) and counts seats in use (enabled users of
-- the tenant) into seats_used; over-use opens a licenses.seats alert.
CREATE TABLE IF NOT EXISTS lamplighter.licenses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES lamplighter.tenants (id),
    plan        text NOT NULL CHECK (btrim(plan) <> ''),
    seats       integer NOT NULL CHECK (seats >= 0),
    seats_used  integer,
    expires_at  timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at  timestamptz NOT NULL DEFAULT lamplighter.now()
);
CREATE INDEX IF NOT EXISTS licenses_active_idx ON lamplighter.licenses (expires_at) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS licenses_tenant_idx ON lamplighter.licenses (tenant_id);
