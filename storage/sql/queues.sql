-- Queue-level figures and controls. The CLI, the console and /metrics all read these.

-- name: queue_stats --
-- Per queue: waiting (available now), scheduled (available later), running, completed
-- (still retained), failed (failed attempts in the window), dead, oldest waiting age.
WITH current AS (
    SELECT queue_name,
           count(*) FILTER (WHERE state = 'queued' AND available_at <= lamplighter.now()) AS waiting,
           count(*) FILTER (WHERE state = 'queued' AND available_at > lamplighter.now()) AS scheduled,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'dead') AS dead,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
           extract(epoch FROM lamplighter.now() - min(available_at)
                   FILTER (WHERE state = 'queued' AND available_at <= lamplighter.now())) AS oldest_waiting_age
    FROM dramatiq.queue
    GROUP BY queue_name
), failures AS (
    SELECT queue_name, count(*) AS failed
    FROM lamplighter.job_history
    WHERE outcome IN ('failed', 'dead', 'lost')
      AND finished_at > lamplighter.now() - make_interval(secs => %(window_seconds)s)
    GROUP BY queue_name
), names AS (
    SELECT queue_name FROM current
    UNION SELECT queue_name FROM failures
    UNION SELECT name FROM lamplighter.queues
)
SELECT n.queue_name,
       coalesce(c.waiting, 0) AS waiting, coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.running, 0) AS running, coalesce(c.completed, 0) AS completed,
       coalesce(f.failed, 0) AS failed, coalesce(c.dead, 0) AS dead,
       coalesce(c.cancelled, 0) AS cancelled,
       coalesce(c.oldest_waiting_age, 0) AS oldest_waiting_age,
       coalesce(p.paused, false) AS paused
FROM names n
LEFT JOIN current c USING (queue_name)
LEFT JOIN failures f USING (queue_name)
LEFT JOIN lamplighter.queues p ON p.name = n.queue_name
ORDER BY n.queue_name;

-- name: queue_set_paused --
INSERT INTO lamplighter.queues (name, paused, changed_by)
VALUES (%(name)s, %(paused)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, changed_by = EXCLUDED.changed_by,
    changed_at = lamplighter.now()
RETURNING name;
