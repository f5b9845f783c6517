-- A job handed back by a dead worker's rescue without a recorded start was claimed and never
-- started, or started in the worker's last flush window and cut short: a job whose runs average
-- under 100 ms records its start with its finish (storage/engine/lifecycle.py). If it is the job
-- that killed the worker (a segfault, the OOM killer as it starts), no attempt was counted, and
-- it would kill every worker that takes it for ever. This counts those hand-backs; the claim
-- returns the count, and a job with one starts only once its start is committed, so a job that
-- kills its worker spends its attempts and goes dead like any other.
-- ADD COLUMN with a constant default rewrites nothing (PostgreSQL 11 and later).
ALTER TABLE dramatiq.queue ADD COLUMN IF NOT EXISTS unconfirmed_rescues integer NOT NULL DEFAULT 0;

-- job_rescue_v2 (0012_job_counters.sql) that counts, when p_count_unstarted, each job it hands
-- back without a recorded start (the dead-worker rescue does; a live worker's reconciliation of
-- claims it never received does not). v2 stays for the previous release's workers during a
-- rolling deploy.
CREATE OR REPLACE FUNCTION lamplighter.job_rescue_v3(p_message_ids uuid[], p_tokens bigint[], p_reason text,
                                                    p_count_unstarted boolean)
RETURNS TABLE (message_id uuid, state text, attempt_lost boolean)
LANGUAGE sql VOLATILE AS $$
    WITH named AS (
        SELECT * FROM unnest(p_message_ids, p_tokens) AS n(message_id, claim_token)
    ), orphans AS (
        SELECT q.message_id, q.attempt, q.started_at, q.worker_id, q.actor_name, q.queue_name,
               q.tenant_id, q.max_attempts, q.concurrency_key
        FROM dramatiq.queue q JOIN named n ON n.message_id = q.message_id
        WHERE q.state = 'running' AND q.claim_token IS NOT DISTINCT FROM n.claim_token
        FOR UPDATE OF q SKIP LOCKED
    ), rescued AS (
        UPDATE dramatiq.queue AS q
        SET state = CASE WHEN o.started_at IS NOT NULL AND o.max_attempts IS NOT NULL
                              AND o.attempt >= o.max_attempts THEN 'dead' ELSE 'queued' END,
            worker_id = NULL, claimed_at = NULL, started_at = NULL, claim_token = NULL,
            mtime = lamplighter.now(), available_at = lamplighter.now(),
            unconfirmed_rescues = q.unconfirmed_rescues
                                  + CASE WHEN p_count_unstarted AND o.started_at IS NULL THEN 1 ELSE 0 END,
            last_error = CASE WHEN o.started_at IS NOT NULL
                              THEN 'WorkerLost: worker ' || o.worker_id || ' ' || p_reason
                                   || ' during attempt ' || o.attempt
                              ELSE q.last_error END,
            finished_at = CASE WHEN o.started_at IS NOT NULL AND o.max_attempts IS NOT NULL
                                    AND o.attempt >= o.max_attempts THEN lamplighter.now() END
        FROM orphans o
        WHERE q.message_id = o.message_id
        RETURNING q.message_id, q.state
    ), freed AS (
        UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
        FROM orphans o JOIN rescued r USING (message_id)
        WHERE o.concurrency_key IS NOT NULL AND s.key = o.concurrency_key AND s.holder = o.message_id
    ), recorded AS (
        INSERT INTO lamplighter.job_history (
            job_id, attempt, actor_name, queue_name, tenant_id, worker_id, started_at,
            finished_at, duration_ms, outcome, error_type, error_message)
        SELECT o.message_id, o.attempt, o.actor_name, o.queue_name, o.tenant_id, o.worker_id,
               o.started_at, lamplighter.now(),
               extract(epoch FROM lamplighter.now() - o.started_at) * 1000, 'lost', 'WorkerLost',
               'worker ' || o.worker_id || ' ' || p_reason || '; job returned to the queue'
        FROM orphans o JOIN rescued r USING (message_id)
        WHERE o.started_at IS NOT NULL
        ON CONFLICT (job_id, attempt) DO NOTHING
        RETURNING job_id, actor_name, outcome, duration_ms
    ), counted AS (
        -- The same upsert as job_finish_many's (storage/sql/jobs.sql): lost attempts count too.
        INSERT INTO lamplighter.job_counters AS c (actor_name, outcome, bucket, shard, attempts, run_seconds)
        SELECT actor_name, outcome, bucket, floor(random() * 16)::smallint, count(*), sum(seconds)
        FROM (SELECT actor_name, outcome, coalesce(duration_ms, 0) / 1000 AS seconds,
                     width_bucket(coalesce(duration_ms, 0) / 1000, lamplighter.run_time_bounds_v1()) AS bucket
              FROM recorded) AS r
        GROUP BY actor_name, outcome, bucket
        ORDER BY actor_name, outcome, bucket
        ON CONFLICT (actor_name, outcome, bucket, shard) DO UPDATE
        SET attempts = c.attempts + EXCLUDED.attempts, run_seconds = c.run_seconds + EXCLUDED.run_seconds
    )
    SELECT r.message_id, r.state, r.message_id IN (SELECT job_id FROM recorded)
    FROM rescued r
$$;
