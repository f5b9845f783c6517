-- The HTTP API (console/web/): error-text search over the job history, and Idempotency-Key
-- records for POST /api/jobs and POST /api/jobs/batch.

-- pg_trgm ships with PostgreSQL's contrib packages and with the embedded server; it is a trusted
-- extension (PostgreSQL 13+), so the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- `GET /api/jobs?error=timeout`: attempts whose error message contains the text (ILIKE), served
-- by a trigram index whatever the history's size. History rows are only inserted and pruned, so
-- the GIN index's write cost falls on the finish of failed attempts only (rows without an error
-- message are outside the partial index). Not CONCURRENTLY: migrations run in a transaction, and a concurrent
-- build would wait on a second release step queued on the migration lock (a deadlock). The build
-- blocks history inserts (job finishes) while it scans the history once.
CREATE INDEX IF NOT EXISTS job_history_error_trgm_idx
    ON lamplighter.job_history USING gin (error_message gin_trgm_ops)
    WHERE error_message IS NOT NULL;

-- A POST with an Idempotency-Key: the first request's answer, kept 24 hours, returned to a retry
-- of the same request by the same principal. request_hash tells a retry from a different request
-- that reuses the key (refused). idempotency_keys.prune_expired deletes expired rows hourly.
CREATE TABLE IF NOT EXISTS lamplighter.idempotency_keys (
    principal     text NOT NULL,  -- token:<id>: keys of different callers never collide
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  text NOT NULL,
    status        integer,        -- NULL while the first request is still being answered
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON lamplighter.idempotency_keys (created_at);
