-- Queue figures past storage.queues.EXACT_UP_TO jobs are the planner's estimates
-- (queue_count_estimate, storage/sql/queues.sql). Without these, the planner multiplies the
-- share of a queue by the share of a state as if they were unrelated: with a finished queue
-- beside a backlogged one it halves the one and invents jobs for the other. Most-common-value
-- lists over the combinations give each (state, queue) and (state, queue, actor) its own share,
-- and each (actor, queue, outcome) of the history (history_count_estimate, storage/sql/stats.sql).
-- They cost ANALYZE a little more. Created empty: the next ANALYZE (autovacuum's) fills them.
CREATE STATISTICS IF NOT EXISTS dramatiq.queue_state_queue_stats (mcv, dependencies)
    ON state, queue_name FROM dramatiq.queue;
CREATE STATISTICS IF NOT EXISTS dramatiq.queue_state_queue_actor_stats (mcv)
    ON state, queue_name, actor_name FROM dramatiq.queue;
CREATE STATISTICS IF NOT EXISTS lamplighter.job_history_actor_outcome_stats (mcv)
    ON actor_name, queue_name, outcome FROM lamplighter.job_history;

-- The queues that have jobs queued without a concurrency key, by a skip scan of
-- queue_claim_unkeyed_idx: one index probe per queue instead of a read of every queued job. The
-- queue figures (queue_stats, stats_by_actor) start from it.
CREATE OR REPLACE VIEW lamplighter.queued_queue_names WITH (security_invoker = true) AS
WITH RECURSIVE names AS (
    (SELECT queue_name FROM dramatiq.queue
     WHERE state = 'queued' AND concurrency_key IS NULL ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT q.queue_name FROM dramatiq.queue q
            WHERE q.state = 'queued' AND q.concurrency_key IS NULL AND q.queue_name > n.queue_name
            ORDER BY q.queue_name LIMIT 1)
    FROM names n WHERE n.queue_name IS NOT NULL
)
SELECT queue_name FROM names WHERE queue_name IS NOT NULL;
