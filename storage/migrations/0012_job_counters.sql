-- Outcome counters and run-time histograms for /metrics (console/metrics.py).
--
-- job_history is pruned, so counts read from it go down; Prometheus counters must not. The finish
-- statement (job_finish_many) and the rescue of lost attempts (job_rescue_v2 below) add each
-- attempt they record to lamplighter.job_counters in the same statement: one grouped upsert per
-- actor, outcome and run-time bucket of the batch, never a row per job, and never recomputed.
-- Pruning does not touch this table.
--
-- A (actor, outcome, bucket) is spread over 16 shard rows, one picked at random per upsert: two
-- worker processes finishing the same actor at once would otherwise queue on one row lock, held
-- until each one's COMMIT is flushed. /metrics sums the shards.

-- Upper bounds, in seconds, of the run-time histogram's buckets (Prometheus "le"). A change is a
-- new function (run_time_bounds_v2) and a new table: counted buckets cannot be re-cut.
CREATE OR REPLACE FUNCTION lamplighter.run_time_bounds_v1() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::double precision[]
$$;

-- bucket: width_bucket(run seconds, run_time_bounds_v1()), i.e. how many bounds are at or below
-- the run time (0: under the first bound; 16: 3600 s or more). A run time exactly on a bound
-- counts in the bucket above it (PostgreSQL's width_bucket), unlike Prometheus' "le".
-- attempts and run_seconds only ever grow.
CREATE TABLE IF NOT EXISTS lamplighter.job_counters (
    actor_name   text NOT NULL,
    outcome      text NOT NULL,
    bucket       smallint NOT NULL,
    shard        smallint NOT NULL,
    attempts     bigint NOT NULL,
    run_seconds  double precision NOT NULL,
    PRIMARY KEY (actor_name, outcome, bucket, shard)
) WITH (
    -- Every batch of finishes rewrites a few of these rows: room for HOT updates on the same page.
    fillfactor = 50
);

-- Attempts finished before this migration are in the history: count what is still there once,
-- so the counters do not start from zero on an existing installation (an upgrade; empty on a new
-- one). Only when the table is empty, so a re-run adds nothing.
INSERT INTO lamplighter.job_counters (actor_name, outcome, bucket, shard, attempts, run_seconds)
SELECT actor_name, outcome, width_bucket(coalesce(duration_ms, 0) / 1000, lamplighter.run_time_bounds_v1()),
       0, count(*), sum(coalesce(duration_ms, 0) / 1000)
FROM lamplighter.job_history
WHERE NOT EXISTS (SELECT 1 FROM lamplighter.job_counters)
GROUP BY 1, 2, 3;

-- /metrics' dead jobs per queue (metrics_queue_depths) without reading each dead row's page: the
-- other indexes on state (queue_finished_idx) do not hold the queue's name. Partial, so a job's
-- claim, start and finish never write to it: only a job going dead does.
CREATE INDEX IF NOT EXISTS queue_dead_idx ON dramatiq.queue (queue_name) WHERE state = 'dead';

-- ---- the rescue, counting --------------------------------------------------------------------
-- job_rescue_v1 (0007_claim_tokens.sql) with the counters' upsert on the attempts it records as
-- lost. v1 stays for the workers of the previous release during a rolling deploy (their rescues
-- are not counted until they are replaced).
CREATE OR REPLACE FUNCTION lamplighter.job_rescue_v2(p_message_ids uuid[], p_tokens bigint[], p_reason text)
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
