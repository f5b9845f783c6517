-- The jobs page (API, dashboard, CLI) filtered by actor, queue or tenant, over finished jobs.
-- Each state's branch of job_page walked queue_finished_idx newest first and dropped the rows of
-- other actors, queues or tenants: cheap for a common one, but one with few finished jobs walked
-- the whole state (a dead-jobs page for an actor without dead jobs: 390 ms at 10M rows; all
-- states: 1.4 s), and a tenant's own page, the one a tenant admin opens, would walk every other
-- tenant's history. These indexes give those branches their own order.
--
-- They cover finished jobs only: a finish writes one entry in each (the tenant's only for jobs
-- with a tenant), about 4 us of server time each per job; claims and retries, which keep a job
-- queued or running, write none. The queue's replaces queue_dead_idx (0012): /metrics' dead jobs
-- per queue read its `state = 'dead'` range, so a job going dead writes no more than before. Not
-- CONCURRENTLY (migrations run in a transaction, see 0013): the build blocks finishes while it
-- reads the finished jobs once, about 10 s per 10M.
CREATE INDEX IF NOT EXISTS queue_finished_actor_idx
    ON dramatiq.queue (actor_name, state, finished_at)
    WHERE state IN ('completed', 'cancelled', 'dead');

CREATE INDEX IF NOT EXISTS queue_finished_queue_idx
    ON dramatiq.queue (state, queue_name, finished_at)
    WHERE state IN ('completed', 'cancelled', 'dead');
DROP INDEX IF EXISTS dramatiq.queue_dead_idx;

CREATE INDEX IF NOT EXISTS queue_finished_tenant_idx
    ON dramatiq.queue (tenant_id, state, finished_at)
    WHERE state IN ('completed', 'cancelled', 'dead') AND tenant_id IS NOT NULL;
