-- Queue-level figures and controls. The CLI, the console and /metrics all read these.

-- name: queue_stats --
-- Per queue: waiting (available now), scheduled (available later), running, completed and
-- cancelled (still retained), failed (failed attempts in the window), dead, the oldest waiting
-- job's age, and whether the queue is paused.
--
-- A backlog of millions costs this query what one of thousands does: each count reads a partial
-- index and stops after %(exact_up_to)s + 1 rows. A figure above exact_up_to means "more than
-- that" and storage/queues.py replaces it with the planner's estimate (queue_count_estimate).
-- queued_capped and scheduled_capped say so for waiting and scheduled jobs: they are counted per
-- queue through queue_claim_unkeyed_idx (scheduled ones per priority), and through one sample of
-- queue_claim_keyed_idx for all queues together (it leads with the concurrency key). Queue names come from a skip scan of those
-- indexes and of queue_finished_queue_idx (one probe per queue, not per job), running jobs, and
-- lamplighter.queues. The oldest waiting job is found by a skip scan over the queue's priorities.
WITH RECURSIVE clock AS MATERIALIZED (
    SELECT lamplighter.now() AS now
), finished_names AS (
    (SELECT state, queue_name FROM dramatiq.queue
     WHERE state IN ('completed', 'cancelled', 'dead') ORDER BY state, queue_name LIMIT 1)
    UNION ALL
    SELECT next.state, next.queue_name
    FROM finished_names f
    CROSS JOIN LATERAL (
        SELECT q.state, q.queue_name FROM dramatiq.queue q
        WHERE q.state IN ('completed', 'cancelled', 'dead') AND (q.state, q.queue_name) > (f.state, f.queue_name)
        ORDER BY q.state, q.queue_name LIMIT 1) next
), keyed_sample AS MATERIALIZED (
    SELECT queue_name, available_at FROM dramatiq.queue
    WHERE state = 'queued' AND concurrency_key IS NOT NULL
    LIMIT %(exact_up_to)s + 1
), keyed AS (
    SELECT queue_name,
           count(*) FILTER (WHERE available_at <= clock.now) AS waiting,
           count(*) FILTER (WHERE available_at > clock.now) AS scheduled,
           min(available_at) FILTER (WHERE available_at <= clock.now) AS oldest_waiting
    FROM keyed_sample CROSS JOIN clock
    GROUP BY queue_name
), running AS (
    SELECT queue_name, count(*) AS running FROM dramatiq.queue WHERE state = 'running' GROUP BY queue_name
), failures AS (
    SELECT queue_name, count(*) AS failed
    FROM lamplighter.job_history
    WHERE outcome IN ('failed', 'dead', 'lost')
      AND finished_at > (SELECT now FROM clock) - make_interval(secs => %(window_seconds)s)
    GROUP BY queue_name
), names AS (
    SELECT queue_name FROM lamplighter.queued_queue_names
    UNION SELECT queue_name FROM finished_names
    UNION SELECT queue_name FROM keyed
    UNION SELECT queue_name FROM running
    UNION SELECT queue_name FROM failures
    UNION SELECT name FROM lamplighter.queues
)
SELECT n.queue_name,
       coalesce(u.waiting, 0) + coalesce(k.waiting, 0) AS waiting,
       coalesce(o.scheduled, 0) + coalesce(k.scheduled, 0) AS scheduled,
       coalesce(r.running, 0) AS running,
       (SELECT count(*) FROM (SELECT FROM dramatiq.queue
                              WHERE state = 'completed' AND queue_name = n.queue_name
                              LIMIT %(exact_up_to)s + 1) c) AS completed,
       coalesce(f.failed, 0) AS failed,
       (SELECT count(*) FROM (SELECT FROM dramatiq.queue
                              WHERE state = 'dead' AND queue_name = n.queue_name
                              LIMIT %(exact_up_to)s + 1) d) AS dead,
       (SELECT count(*) FROM (SELECT FROM dramatiq.queue
                              WHERE state = 'cancelled' AND queue_name = n.queue_name
                              LIMIT %(exact_up_to)s + 1) x) AS cancelled,
       coalesce(extract(epoch FROM clock.now - least(o.oldest_waiting, k.oldest_waiting)), 0)::double precision
           AS oldest_waiting_age,
       (coalesce(u.queued, 0) > %(exact_up_to)s OR kc.capped) AS queued_capped,
       (coalesce(o.scheduled, 0) > %(exact_up_to)s OR kc.capped) AS scheduled_capped,
       clock.now AS counted_at,
       coalesce(p.paused, false) AS paused
FROM names n
CROSS JOIN clock
CROSS JOIN (SELECT count(*) > %(exact_up_to)s AS capped FROM keyed_sample) kc
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE s.available_at <= clock.now) AS waiting, count(*) AS queued
    FROM (SELECT available_at FROM dramatiq.queue
          WHERE state = 'queued' AND concurrency_key IS NULL AND queue_name = n.queue_name
          LIMIT %(exact_up_to)s + 1) s
) u ON true
LEFT JOIN LATERAL (
    -- Per priority (a skip scan): its first job in claim order is its longest-available one,
    -- and the jobs available later are one range of the index.
    WITH RECURSIVE firsts AS (
        (SELECT priority, available_at FROM dramatiq.queue
         WHERE state = 'queued' AND concurrency_key IS NULL AND queue_name = n.queue_name
         ORDER BY priority, available_at LIMIT 1)
        UNION ALL
        SELECT next.priority, next.available_at
        FROM firsts
        CROSS JOIN LATERAL (
            SELECT priority, available_at FROM dramatiq.queue
            WHERE state = 'queued' AND concurrency_key IS NULL AND queue_name = n.queue_name
              AND priority > firsts.priority
            ORDER BY priority, available_at LIMIT 1) next
    )
    SELECT min(available_at) FILTER (WHERE available_at <= clock.now) AS oldest_waiting,
           sum((SELECT count(*) FROM (SELECT FROM dramatiq.queue
                                      WHERE state = 'queued' AND concurrency_key IS NULL
                                        AND queue_name = n.queue_name AND priority = firsts.priority
                                        AND available_at > clock.now
                                      LIMIT %(exact_up_to)s + 1) later))::bigint AS scheduled
    FROM firsts
) o ON true
LEFT JOIN keyed k USING (queue_name)
LEFT JOIN running r USING (queue_name)
LEFT JOIN failures f USING (queue_name)
LEFT JOIN lamplighter.queues p ON p.name = n.queue_name
ORDER BY n.queue_name;

-- name: queue_count_estimate --
-- The planner's estimate of a count that queue_stats (or stats_by_actor) found above its
-- exact_up_to: jobs of a queue (and actor, unless NULL) in a state, available in [from, until).
-- Statistics on (state, queue_name[, actor_name]) (migration 0026) keep it close while
-- autovacuum's ANALYZE keeps up; it is never reported below the exact count's bound.
EXPLAIN (FORMAT JSON)
SELECT FROM dramatiq.queue
WHERE state = %(state)s AND queue_name = %(queue)s
  AND (%(actor)s::text IS NULL OR actor_name = %(actor)s::text)
  AND available_at >= %(from)s AND available_at < %(until)s;

-- name: queue_set_paused --
INSERT INTO lamplighter.queues (name, paused, changed_by)
VALUES (%(name)s, %(paused)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, changed_by = EXCLUDED.changed_by,
    changed_at = lamplighter.now()
RETURNING name;

-- name: queue_stats_settings --
-- For the transaction of the figures' queries (storage.queues.counting): their bounded counts
-- look costly to the planner, which would spend most of a second compiling them (JIT) to run
-- them in a few milliseconds.
SET LOCAL jit = off;
