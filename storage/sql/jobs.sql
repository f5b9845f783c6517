-- Queue SQL: every statement that writes or claims a job row. Loaded by storage.queries.
-- Every time comparison uses lamplighter.now() (injectable clock).

-- name: job_insert_many --
-- The only way a job row is written. %(jobs)s is a JSON array of objects; one statement
-- for one job or ten thousand. Re-sending an existing message_id queues it again (stock
-- dramatiq-pg semantics). One small NOTIFY per queue wakes workers; it carries no message.
WITH incoming AS (
    SELECT *
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS j(
        message_id uuid, queue_name text, actor_name text, message jsonb, priority integer,
        delay_ms bigint, max_attempts integer, unique_key text, concurrency_key text,
        tenant_id text, correlation_id text, enqueued_by text)
), inserted AS (
    INSERT INTO dramatiq.queue AS q (
        message_id, queue_name, actor_name, message, priority, available_at, enqueued_at,
        max_attempts, unique_key, concurrency_key, tenant_id, correlation_id, enqueued_by, state)
    SELECT message_id, queue_name, actor_name, message, coalesce(priority, 0),
           lamplighter.now() + coalesce(delay_ms, 0) * interval '1 millisecond', lamplighter.now(),
           max_attempts, unique_key, concurrency_key, tenant_id, correlation_id, enqueued_by, 'queued'
    FROM incoming
    ON CONFLICT (message_id) DO UPDATE SET
        state = 'queued', message = EXCLUDED.message, queue_name = EXCLUDED.queue_name,
        actor_name = EXCLUDED.actor_name, priority = EXCLUDED.priority,
        available_at = EXCLUDED.available_at, max_attempts = EXCLUDED.max_attempts,
        worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
        mtime = lamplighter.now()
    RETURNING q.message_id, q.queue_name
), woken AS (
    SELECT pg_notify('dramatiq.' || queue_name || '.enqueue', '')
    FROM (SELECT DISTINCT queue_name FROM inserted) AS queues
)
SELECT message_id FROM inserted, (SELECT count(*) FROM woken) AS w;

-- name: job_claim_batch --
-- Claim up to %(limit)s available jobs of one queue for this worker, by priority then time.
-- SKIP LOCKED: concurrent claimers never wait on each other and never take the same row;
-- the partial index queue_claim_idx makes this O(batch) whatever the backlog.
-- No advisory locks: the claim is the row's state, owner and the worker's heartbeat.
WITH next_jobs AS (
    SELECT message_id
    FROM dramatiq.queue
    WHERE state = 'queued'
      AND queue_name = %(queue)s
      AND available_at <= lamplighter.now()
      AND NOT EXISTS (SELECT 1 FROM lamplighter.queues p WHERE p.name = %(queue)s AND p.paused)
    ORDER BY priority, available_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE dramatiq.queue AS q
SET state = 'running', worker_id = %(worker_id)s, claimed_at = lamplighter.now(),
    started_at = NULL, mtime = lamplighter.now()
FROM next_jobs
WHERE q.message_id = next_jobs.message_id
RETURNING q.message_id, q.message, q.attempt, q.actor_name, q.tenant_id, q.priority,
          q.max_attempts, q.enqueued_at;

-- name: job_mark_started --
-- An attempt counts when the actor starts, not when the job is claimed: a prefetched job
-- handed back on shutdown or rescued after a crash keeps its attempts.
UPDATE dramatiq.queue AS q
SET attempt = q.attempt + 1, started_at = s.started_at, mtime = lamplighter.now()
FROM jsonb_to_recordset(%(starts)s::jsonb) AS s(message_id uuid, attempt integer, started_at timestamptz)
WHERE q.message_id = s.message_id AND q.attempt = s.attempt
  AND q.worker_id = %(worker_id)s AND q.state = 'running';

-- name: job_finish_many --
-- Finish attempts: state change and history row in one statement. Each finish names
-- (job, attempt, worker): a late finish of attempt n (after a rescue) matches no row and
-- writes nothing, so it can never overwrite attempt n+1. Re-running the same statement
-- after a COMMIT whose outcome was unknown is harmless for the same reason.
WITH f AS (
    SELECT *
    FROM jsonb_to_recordset(%(finishes)s::jsonb) AS f(
        message_id uuid, attempt integer, state text, delay_ms bigint, outcome text,
        started_at timestamptz, finished_at timestamptz, duration_ms double precision,
        args_digest text, error_type text, error_message text, traceback text,
        result_summary jsonb)
), finished AS (
    UPDATE dramatiq.queue AS q
    SET state = f.state,
        mtime = lamplighter.now(),
        available_at = CASE WHEN f.state = 'queued'
                            THEN lamplighter.now() + coalesce(f.delay_ms, 0) * interval '1 millisecond'
                            ELSE q.available_at END,
        finished_at = CASE WHEN f.state = 'queued' THEN NULL ELSE lamplighter.now() END,
        worker_id = NULL, claimed_at = NULL, started_at = NULL,
        last_error = CASE WHEN f.error_type IS NULL THEN q.last_error
                          ELSE f.error_type || ': ' || coalesce(f.error_message, '') END
    FROM f
    WHERE q.message_id = f.message_id AND q.attempt = f.attempt
      AND q.worker_id = %(worker_id)s AND q.state = 'running'
    RETURNING q.message_id, q.actor_name, q.queue_name, q.tenant_id
)
INSERT INTO lamplighter.job_history (
    job_id, attempt, actor_name, queue_name, tenant_id, args_digest, worker_id, started_at,
    finished_at, duration_ms, outcome, error_type, error_message, traceback, result_summary)
SELECT f.message_id, f.attempt, finished.actor_name, finished.queue_name, finished.tenant_id,
       f.args_digest, %(worker_id)s, f.started_at, f.finished_at, f.duration_ms, f.outcome,
       f.error_type, f.error_message, f.traceback, f.result_summary
FROM finished JOIN f USING (message_id)
ON CONFLICT (job_id, attempt) DO NOTHING
RETURNING job_id;

-- name: job_reject_undecodable --
-- A row that never ran because its message cannot be run (not decodable, unknown actor, bad
-- arguments): dead at once with the reason. No attempt is consumed and no history row
-- written, since nothing ran; the job row keeps the reason in last_error.
UPDATE dramatiq.queue
SET state = 'dead', last_error = %(reason)s, worker_id = NULL, claimed_at = NULL,
    finished_at = lamplighter.now(), mtime = lamplighter.now()
WHERE message_id = %(message_id)s AND worker_id = %(worker_id)s AND state = 'running';

-- name: job_release_unstarted --
-- Hand claimed jobs back (shutdown, consumer restart): unstarted ones keep their attempt.
UPDATE dramatiq.queue
SET state = 'queued', worker_id = NULL, claimed_at = NULL, started_at = NULL,
    mtime = lamplighter.now()
WHERE message_id = ANY(%(message_ids)s::uuid[]) AND worker_id = %(worker_id)s AND state = 'running';

-- name: job_get --
SELECT message_id, queue_name, actor_name, state, message, priority, available_at, enqueued_at,
       attempt, max_attempts, worker_id, claimed_at, started_at, finished_at, unique_key,
       concurrency_key, tenant_id, correlation_id, enqueued_by, last_error, cancel_requested,
       mtime
FROM dramatiq.queue
WHERE message_id = %(message_id)s;

-- name: job_list --
SELECT message_id, queue_name, actor_name, state, message, priority, available_at, enqueued_at,
       attempt, max_attempts, worker_id, claimed_at, started_at, finished_at, unique_key,
       concurrency_key, tenant_id, correlation_id, enqueued_by, last_error, cancel_requested,
       mtime
FROM dramatiq.queue
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(actor)s::text IS NULL OR actor_name = %(actor)s)
  AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
ORDER BY mtime DESC
LIMIT %(limit)s;

-- name: job_requeue --
-- Operator retry of a dead, cancelled or completed job: queued now, with room for as many
-- attempts as it originally had. History keeps counting attempts from where they were.
UPDATE dramatiq.queue
SET state = 'queued', available_at = lamplighter.now(), mtime = lamplighter.now(),
    worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
    cancel_requested = false,
    max_attempts = CASE WHEN max_attempts IS NULL THEN NULL ELSE attempt + max_attempts END,
    message = CASE WHEN %(message)s::jsonb IS NULL THEN message ELSE %(message)s::jsonb END
WHERE message_id = %(message_id)s AND state IN ('dead', 'cancelled', 'completed')
RETURNING message_id;

-- name: job_cancel_waiting --
-- A waiting or scheduled job is cancelled at once.
UPDATE dramatiq.queue
SET state = 'cancelled', finished_at = lamplighter.now(), mtime = lamplighter.now(),
    last_error = 'cancelled by ' || %(by)s
WHERE message_id = %(message_id)s AND state = 'queued'
RETURNING message_id;

-- name: job_cancel_running --
-- A running job gets a cooperative flag the actor can check (issue: job semantics).
UPDATE dramatiq.queue
SET cancel_requested = true, mtime = lamplighter.now()
WHERE message_id = %(message_id)s AND state = 'running'
RETURNING message_id;
