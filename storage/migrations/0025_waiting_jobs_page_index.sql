-- The jobs page's waiting branch (job_page, storage/sql/jobs.sql) in its own order: newest
-- enqueued first. It sorted every waiting job to show the newest 50, which is nothing for a
-- queue that keeps up and a second or two for a backlog of a million (bench/overload.py:
-- GET /api/jobs p50 0.8 s, p95 1.5 s while a million drained; 1.9 s before the workers
-- started). Partial, on waiting jobs only: an enqueue (and a retry) writes one more entry; a
-- claim, a finish and a prune write none (a row leaving the predicate adds nothing), and vacuum
-- clears the entries of jobs that moved on. Running jobs are few (at most the workers'
-- threads) and keep their sort. Not CONCURRENTLY (the migration runs in a transaction): the
-- build holds back enqueues while it reads the waiting jobs: 0.6 s for a million on PostgreSQL
-- 15 here, where the waiting branch then took 0.08 ms instead of 247 ms.
CREATE INDEX IF NOT EXISTS queue_waiting_page_idx
    ON dramatiq.queue (enqueued_at DESC, message_id DESC)
    WHERE state = 'queued';
