-- Lamplighter schema, release 0.1.
--
-- dramatiq.queue keeps dramatiq-pg's table name and columns (message_id, queue_name, state,
-- mtime, message, result, result_ttl) so a service with only dramatiq + dramatiq-pg installed
-- can still enqueue; everything else Lamplighter owns lives in the lamplighter schema.

CREATE SCHEMA IF NOT EXISTS lamplighter;
CREATE SCHEMA IF NOT EXISTS dramatiq;

-- The one source of "now" for SQL. Tests shift it per session with
-- SET lamplighter.clock_offset = '<seconds>' (LAMPLIGHTER_CLOCK_OFFSET does it per connection).
CREATE OR REPLACE FUNCTION lamplighter.now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT now() + make_interval(secs => coalesce(nullif(current_setting('lamplighter.clock_offset', true), ''), '0')::double precision)
$$;

-- State machine (README "Job states"):
--   queued  --claim-->  running  --finish-->  completed
--                          |-- failed, attempts left --> queued (available_at = next try)
--                          |-- failed for good / undecodable --> dead
--                          '-- cancel --> cancelled
--   queued  --cancel-->  cancelled;   dead/cancelled --retry--> queued
-- "scheduled" is not a state: it is queued with available_at in the future.
-- state is text with a CHECK rather than an enum: stock dramatiq-pg clients insert the literal
-- 'queued', and adding a state later needs no ALTER TYPE ... ADD VALUE.
CREATE TABLE IF NOT EXISTS dramatiq.queue (
    message_id       uuid PRIMARY KEY,
    queue_name       text NOT NULL DEFAULT 'default',
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'completed', 'dead', 'cancelled')),
    mtime            timestamptz NOT NULL DEFAULT lamplighter.now(),
    message          jsonb NOT NULL,
    result           jsonb,
    result_ttl       timestamptz,
    actor_name       text NOT NULL DEFAULT '',
    priority         integer NOT NULL DEFAULT 0,
    available_at     timestamptz NOT NULL DEFAULT lamplighter.now(),
    enqueued_at      timestamptz NOT NULL DEFAULT lamplighter.now(),
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer CHECK (max_attempts IS NULL OR max_attempts >= 1),
    worker_id        uuid,
    claimed_at       timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    unique_key       text,
    concurrency_key  text,
    tenant_id        text,
    correlation_id   text,
    enqueued_by      text,
    last_error       text,
    cancel_requested boolean NOT NULL DEFAULT false
) WITH (
    -- The hot table: every job is inserted, updated twice and deleted by pruning. Vacuum it
    -- early so dead tuples do not pile up in the claim index, and leave room for HOT updates.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);

-- The claim: next available jobs of one queue by priority then time; only queued rows.
CREATE INDEX IF NOT EXISTS queue_claim_idx
    ON dramatiq.queue (queue_name, priority, available_at) WHERE state = 'queued';
-- Rescue and `lamplighter workers`: running jobs by worker.
CREATE INDEX IF NOT EXISTS queue_running_idx
    ON dramatiq.queue (worker_id) WHERE state = 'running';
-- Pruning, stats and `lamplighter jobs --state`.
CREATE INDEX IF NOT EXISTS queue_state_mtime_idx ON dramatiq.queue (state, mtime);
CREATE INDEX IF NOT EXISTS queue_actor_mtime_idx ON dramatiq.queue (actor_name, mtime);

-- Stock dramatiq-pg clients write only (queue_name, message_id, state, message) and send
-- delayed messages to '<queue>.DQ' with options.eta in epoch milliseconds. Give those rows
-- our columns: actor from the message, the delay as available_at on the base queue, and no
-- eta left in the message (dramatiq's worker would otherwise hold the message in memory).
CREATE OR REPLACE FUNCTION lamplighter.queue_adopt_stock_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(NEW.message) = 'object' THEN
        IF NEW.actor_name = '' AND jsonb_typeof(NEW.message -> 'actor_name') = 'string' THEN
            NEW.actor_name := NEW.message ->> 'actor_name';
        END IF;
        IF NEW.queue_name LIKE '%.DQ' THEN
            NEW.queue_name := left(NEW.queue_name, -3);
            IF jsonb_typeof(NEW.message #> '{options,eta}') = 'number' THEN
                NEW.available_at := to_timestamp((NEW.message #>> '{options,eta}')::double precision / 1000.0);
            END IF;
            NEW.message := jsonb_set(NEW.message #- '{options,eta}', '{queue_name}', to_jsonb(NEW.queue_name));
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.state = 'queued' AND OLD.state <> 'queued' THEN
        -- A stock re-send of a finished message queues it again: it is a fresh run.
        NEW.worker_id := NULL;
        NEW.claimed_at := NULL;
        NEW.started_at := NULL;
        NEW.finished_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS queue_adopt_stock_insert ON dramatiq.queue;
CREATE TRIGGER queue_adopt_stock_insert BEFORE INSERT ON dramatiq.queue
    FOR EACH ROW WHEN (NEW.actor_name = '' OR NEW.queue_name LIKE '%.DQ')
    EXECUTE FUNCTION lamplighter.queue_adopt_stock_row();
DROP TRIGGER IF EXISTS queue_adopt_stock_update ON dramatiq.queue;
CREATE TRIGGER queue_adopt_stock_update BEFORE UPDATE ON dramatiq.queue
    FOR EACH ROW WHEN (NEW.queue_name LIKE '%.DQ' OR (NEW.state = 'queued' AND OLD.state <> 'queued' AND NEW.worker_id IS NOT NULL))
    EXECUTE FUNCTION lamplighter.queue_adopt_stock_row();

-- One row per attempt: who ran what, when, how long, how it ended and why it failed.
-- Written in the same transaction as the job's state change.
CREATE TABLE IF NOT EXISTS lamplighter.job_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          uuid NOT NULL,
    attempt         integer NOT NULL,
    actor_name      text NOT NULL,
    queue_name      text NOT NULL,
    tenant_id       text,
    args_digest     text,
    worker_id       uuid,
    started_at      timestamptz,
    finished_at     timestamptz NOT NULL,
    duration_ms     double precision,
    outcome         text NOT NULL
                    CHECK (outcome IN ('completed', 'failed', 'dead', 'cancelled', 'lost')),
    error_type      text,
    error_message   text,
    traceback       text,
    result_summary  jsonb,
    UNIQUE (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS job_history_finished_idx ON lamplighter.job_history (finished_at);
CREATE INDEX IF NOT EXISTS job_history_failed_idx
    ON lamplighter.job_history (queue_name, finished_at) WHERE outcome IN ('failed', 'dead', 'lost');

-- One row per live worker process, its heartbeat timed by the database clock.
CREATE TABLE IF NOT EXISTS lamplighter.workers (
    id            uuid PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    queues        text[] NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT lamplighter.now(),
    stopping      boolean NOT NULL DEFAULT false
);

-- Queues an operator paused (`lamplighter queue pause Q`); absent means running.
CREATE TABLE IF NOT EXISTS lamplighter.queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    changed_at  timestamptz NOT NULL DEFAULT lamplighter.now(),
    changed_by  text
);

-- Actors some deployment has declared; workers keep it current at start-up.
CREATE TABLE IF NOT EXISTS lamplighter.actors (
    name        text PRIMARY KEY,
    queue_name  text NOT NULL,
    priority    integer NOT NULL DEFAULT 0,
    options     jsonb NOT NULL DEFAULT '{}',
    first_seen  timestamptz NOT NULL DEFAULT lamplighter.now(),
    last_seen   timestamptz NOT NULL DEFAULT lamplighter.now()
);

-- Key/value cache with expiry (federation statements, JWKS, ...). Values that are secret are
-- stored encrypted by storage.encryption before they get here.
CREATE TABLE IF NOT EXISTS lamplighter.cache (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT lamplighter.now()
);
CREATE INDEX IF NOT EXISTS cache_expires_idx ON lamplighter.cache (expires_at) WHERE expires_at IS NOT NULL;
