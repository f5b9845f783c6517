-- Performance samples (lamplighter.perf_samples, lamplighter.perf_system_samples): written by
-- monitoring.performance, read by `lamplighter perf` and the dashboard's charts.

-- name: perf_take_sample --
-- One sample over (period_start, now]: period_start is the previous sample's time (at most
-- %(max_period_seconds)s back; %(default_period_seconds)s back for the first). Per actor, the
-- attempts that finished in it: completed, failed (failed, dead, lost), failure rate, attempts a
-- minute, run time p50/p95/p99 and queue wait p50/p95 (started_at - available_at of the job's
-- latest attempt: earlier attempts' availability is not kept). Then waiting jobs per queue and
-- this database's connections. Returns the sample's time and how many actors it covers.
WITH bounds AS (
    SELECT lamplighter.now() AS taken_at,
           greatest(coalesce((SELECT max(taken_at) FROM lamplighter.perf_system_samples
                              WHERE taken_at < lamplighter.now()),
                             lamplighter.now() - make_interval(secs => %(default_period_seconds)s)),
                    lamplighter.now() - make_interval(secs => %(max_period_seconds)s)) AS period_start
), attempts AS (
    SELECT h.actor_name, h.queue_name, h.outcome, h.duration_ms,
           CASE WHEN q.attempt = h.attempt AND h.started_at IS NOT NULL
                THEN greatest(extract(epoch FROM h.started_at - q.available_at) * 1000.0, 0) END AS wait_ms
    FROM bounds b
    JOIN lamplighter.job_history h ON h.finished_at > b.period_start AND h.finished_at <= b.taken_at
    LEFT JOIN dramatiq.queue q ON q.message_id = h.job_id
), actors AS (
    INSERT INTO lamplighter.perf_samples (taken_at, period_start, actor_name, queue_name, completed, failed,
                                          failure_rate, per_minute, run_p50_ms, run_p95_ms, run_p99_ms,
                                          wait_p50_ms, wait_p95_ms)
    SELECT b.taken_at, b.period_start, a.actor_name, min(a.queue_name),
           count(*) FILTER (WHERE a.outcome = 'completed'),
           count(*) FILTER (WHERE a.outcome IN ('failed', 'dead', 'lost')),
           coalesce(count(*) FILTER (WHERE a.outcome IN ('failed', 'dead', 'lost'))::double precision
                    / nullif(count(*) FILTER (WHERE a.outcome <> 'cancelled'), 0), 0),
           count(*) / greatest(extract(epoch FROM b.taken_at - b.period_start) / 60.0, 1e-9),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY a.duration_ms),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.wait_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY a.wait_ms)
    FROM attempts a, bounds b
    WHERE b.taken_at > b.period_start
    GROUP BY a.actor_name, b.taken_at, b.period_start
    RETURNING 1
)
INSERT INTO lamplighter.perf_system_samples (taken_at, connections_in_use, queue_depths)
SELECT b.taken_at,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
       (SELECT coalesce(jsonb_object_agg(d.queue_name, d.waiting), '{}')
        FROM (SELECT queue_name, count(*) AS waiting FROM dramatiq.queue
              WHERE state = 'queued' AND available_at <= lamplighter.now() GROUP BY queue_name) d)
FROM bounds b
RETURNING taken_at, (SELECT count(*) FROM actors) AS actors;

-- name: perf_series --
-- Samples taken since %(since_seconds)s ago, of one actor or all, oldest first per actor.
SELECT taken_at, period_start, actor_name, queue_name, completed, failed, failure_rate, per_minute,
       run_p50_ms, run_p95_ms, run_p99_ms, wait_p50_ms, wait_p95_ms
FROM lamplighter.perf_samples
WHERE taken_at > lamplighter.now() - make_interval(secs => %(since_seconds)s)
  AND (%(actor)s::text IS NULL OR actor_name = %(actor)s)
ORDER BY actor_name, taken_at;

-- name: perf_system_series --
-- Whole-system samples taken since %(since_seconds)s ago, oldest first.
SELECT taken_at, connections_in_use, queue_depths
FROM lamplighter.perf_system_samples
WHERE taken_at > lamplighter.now() - make_interval(secs => %(since_seconds)s)
ORDER BY taken_at;

-- name: perf_prune_batch --
-- One bounded batch of actor samples older than the retention.
DELETE FROM lamplighter.perf_samples
WHERE id IN (SELECT id FROM lamplighter.perf_samples
             WHERE taken_at < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
             ORDER BY taken_at LIMIT %(batch_size)s);

-- name: perf_system_prune_batch --
-- One bounded batch of whole-system samples older than the retention.
DELETE FROM lamplighter.perf_system_samples
WHERE id IN (SELECT id FROM lamplighter.perf_system_samples
             WHERE taken_at < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
             ORDER BY taken_at LIMIT %(batch_size)s);
