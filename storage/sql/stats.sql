-- Queue statistics per queue and actor (`GET /api/queues/stats`, `lamplighter stats --by-actor`).

-- name: stats_by_actor --
-- Per (queue, actor): waiting (available now), scheduled (available later), running, dead (now),
-- completed and failed attempts finished within the window, oldest waiting age, and the run
-- time of the window's attempts (p50, p95, milliseconds). Current figures come from the queue,
-- window figures from the history (job_history_finished_idx bounds the scan to the window).
--
-- As in queue_stats (storage/sql/queues.sql), a deep queue costs what a shallow one does: per
-- queue, its first %(exact_up_to)s + 1 queued jobs in claim order and as many dead ones are read
-- and grouped by actor (plus one sample of the jobs with a concurrency key, for all queues).
-- queued_capped / dead_capped say a queue had more: storage/stats.py then replaces that queue's
-- figures by the planner's estimates per actor. Such a queue lists the actors of the jobs read.
-- Likewise the window: its newest exact_up_to + 1 attempts are read; window_capped says there
-- were more, and storage/stats.py estimates completed and failed (history_count_estimate). The
-- run-time percentiles are then those of the newest attempts.
WITH RECURSIVE clock AS MATERIALIZED (
    SELECT lamplighter.now() AS now
), dead_names AS (
    (SELECT queue_name FROM dramatiq.queue WHERE state = 'dead' ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT q.queue_name FROM dramatiq.queue q
            WHERE q.state = 'dead' AND q.queue_name > d.queue_name ORDER BY q.queue_name LIMIT 1)
    FROM dead_names d WHERE d.queue_name IS NOT NULL
), queued_sample AS MATERIALIZED (
    SELECT n.queue_name, s.actor_name, s.available_at, false AS keyed
    FROM lamplighter.queued_queue_names n
    CROSS JOIN LATERAL (
        SELECT actor_name, available_at FROM dramatiq.queue
        WHERE state = 'queued' AND concurrency_key IS NULL AND queue_name = n.queue_name
        ORDER BY priority, available_at  -- claim order: the longest-waiting jobs are among them
        LIMIT %(exact_up_to)s + 1) s
    UNION ALL
    (SELECT queue_name, actor_name, available_at, true FROM dramatiq.queue
     WHERE state = 'queued' AND concurrency_key IS NOT NULL
     LIMIT %(exact_up_to)s + 1)
), queued_capped AS (
    SELECT queue_name, true AS capped FROM queued_sample WHERE NOT keyed
    GROUP BY queue_name HAVING count(*) > %(exact_up_to)s
    UNION
    SELECT DISTINCT queue_name, true FROM queued_sample
    WHERE (SELECT count(*) FROM queued_sample WHERE keyed) > %(exact_up_to)s
), dead_sample AS MATERIALIZED (
    SELECT n.queue_name, s.actor_name
    FROM dead_names n
    CROSS JOIN LATERAL (
        SELECT actor_name FROM dramatiq.queue WHERE state = 'dead' AND queue_name = n.queue_name
        LIMIT %(exact_up_to)s + 1) s
    WHERE n.queue_name IS NOT NULL
), current AS (
    SELECT queue_name, actor_name,
           count(*) FILTER (WHERE available_at <= clock.now) AS waiting,
           count(*) FILTER (WHERE available_at > clock.now) AS scheduled,
           0::bigint AS running, 0::bigint AS dead,
           min(available_at) FILTER (WHERE available_at <= clock.now) AS oldest_waiting
    FROM queued_sample CROSS JOIN clock
    GROUP BY queue_name, actor_name
    UNION ALL
    SELECT queue_name, actor_name, 0, 0, count(*), 0, NULL
    FROM dramatiq.queue WHERE state = 'running'
    GROUP BY queue_name, actor_name
    UNION ALL
    SELECT queue_name, actor_name, 0, 0, 0, count(*), NULL
    FROM dead_sample
    GROUP BY queue_name, actor_name
), current_by_actor AS (
    SELECT queue_name, actor_name, sum(waiting)::bigint AS waiting, sum(scheduled)::bigint AS scheduled,
           sum(running)::bigint AS running, sum(dead)::bigint AS dead, min(oldest_waiting) AS oldest_waiting
    FROM current
    GROUP BY queue_name, actor_name
), recent AS MATERIALIZED (
    -- The window's attempts, newest first, at most exact_up_to + 1 of them (job_history_finished_idx
    -- read backwards): a busy hour holds hundreds of thousands, and sorting them all for the
    -- percentiles took most of a second.
    SELECT queue_name, actor_name, outcome, duration_ms, finished_at
    FROM lamplighter.job_history
    WHERE finished_at > (SELECT now FROM clock) - make_interval(secs => %(window_seconds)s)
    ORDER BY finished_at DESC
    LIMIT %(exact_up_to)s + 1
), windowed AS (
    SELECT queue_name, actor_name,
           count(*) FILTER (WHERE outcome = 'completed') AS completed,
           count(*) FILTER (WHERE outcome IN ('failed', 'dead', 'lost')) AS failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS run_ms_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS run_ms_p95
    FROM recent
    GROUP BY queue_name, actor_name
)
SELECT queue_name, actor_name,
       coalesce(c.waiting, 0) AS waiting, coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.running, 0) AS running, coalesce(w.completed, 0) AS completed,
       coalesce(w.failed, 0) AS failed, coalesce(c.dead, 0) AS dead,
       coalesce(extract(epoch FROM (SELECT now FROM clock) - c.oldest_waiting), 0)::double precision
           AS oldest_waiting_age,
       w.run_ms_p50, w.run_ms_p95,
       coalesce(qc.capped, false) AS queued_capped,
       queue_name IN (SELECT queue_name FROM dead_sample GROUP BY queue_name
                      HAVING count(*) > %(exact_up_to)s) AS dead_capped,
       (SELECT count(*) > %(exact_up_to)s FROM recent) AS window_capped,
       (SELECT now FROM clock) - make_interval(secs => %(window_seconds)s) AS window_start,
       (SELECT now FROM clock) AS counted_at
FROM current_by_actor c
FULL JOIN windowed w USING (queue_name, actor_name)
LEFT JOIN queued_capped qc USING (queue_name)
ORDER BY queue_name, actor_name;

-- name: history_count_estimate --
-- The planner's estimate of an actor's attempts in a queue with one of some outcomes finished
-- since a moment: stats_by_actor's completed or failed when the window held more attempts than
-- it reads. job_history_finished_idx gives the planner the newest finish time.
EXPLAIN (FORMAT JSON)
SELECT FROM lamplighter.job_history
WHERE actor_name = %(actor)s AND queue_name = %(queue)s AND outcome = ANY(%(outcomes)s::text[])
  AND finished_at > %(since)s;
