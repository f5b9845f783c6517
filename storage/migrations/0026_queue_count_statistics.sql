-- Queue figures past storage.queues.EXACT_UP_TO jobs are the planner's estimates
-- (queue_count_estimate, storage/sql/queues.sql). Without these, the planner multiplies the
-- share of a queue by the share of a state as if they were unrelated: with a finished queue
-- beside a backlogged one it halves the one and invents jobs for the other. Most-common-value
-- lists over the combinations give each (state, queue) and (state, queue, actor) its own share.
-- They cost ANALYZE a little more and change no plan of the claim or the finish (those filter on
-- partial indexes' predicates). Created empty: the next ANALYZE (autovacuum's) fills them.
CREATE STATISTICS IF NOT EXISTS dramatiq.queue_state_queue_stats (mcv, dependencies)
    ON state, queue_name FROM dramatiq.queue;
CREATE STATISTICS IF NOT EXISTS dramatiq.queue_state_queue_actor_stats (mcv)
    ON state, queue_name, actor_name FROM dramatiq.queue;
