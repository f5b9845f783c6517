-- Queue statistics per queue and actor (`GET /api/queues/stats`, `lamplighter stats --by-actor`).

-- name: stats_by_actor --
-- Per (queue, actor): waiting (available now), scheduled (available later), running, dead (now),
-- completed and failed attempts finished within the window, oldest waiting age, and the run
-- time of the window's attempts (p50, p95, milliseconds). Current figures come from the queue,
-- window figures from the history (job_history_finished_idx bounds the scan to the window).
WITH current AS (
    SELECT queue_name, actor_name,
           count(*) FILTER (WHERE state = 'queued' AND available_at <= lamplighter.now()) AS waiting,
           count(*) FILTER (WHERE state = 'queued' AND available_at > lamplighter.now()) AS scheduled,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE state = 'dead') AS dead,
           extract(epoch FROM lamplighter.now() - min(available_at)
                   FILTER (WHERE state = 'queued' AND available_at <= lamplighter.now())) AS oldest_waiting_age
    FROM dramatiq.queue
    WHERE state IN ('queued', 'running', 'dead')
    GROUP BY queue_name, actor_name
), windowed AS (
    SELECT queue_name, actor_name,
           count(*) FILTER (WHERE outcome = 'completed') AS completed,
           count(*) FILTER (WHERE outcome IN ('failed', 'dead', 'lost')) AS failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS run_ms_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS run_ms_p95
    FROM lamplighter.job_history
    WHERE finished_at > lamplighter.now() - make_interval(secs => %(window_seconds)s)
    GROUP BY queue_name, actor_name
)
SELECT queue_name, actor_name,
       coalesce(c.waiting, 0) AS waiting, coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.running, 0) AS running, coalesce(w.completed, 0) AS completed,
       coalesce(w.failed, 0) AS failed, coalesce(c.dead, 0) AS dead,
       coalesce(c.oldest_waiting_age, 0)::double precision AS oldest_waiting_age,
       w.run_ms_p50, w.run_ms_p95
FROM current c
FULL JOIN windowed w USING (queue_name, actor_name)
ORDER BY queue_name, actor_name;
