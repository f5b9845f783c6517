-- /metrics (console/metrics.py): every figure from the database, so every web process reports
-- the same values. Each query reads an index or a small table, never the whole history or every
-- finished job: a scrape must stay fast with millions of them.

-- name: metrics_time_limit --
-- For the rest of the scrape's transaction: a database too slow to answer in time gets no pile of
-- scrapes waiting on it (Prometheus gives up after its scrape_timeout anyway).
SELECT set_config('statement_timeout', %(milliseconds)s::text, true);

-- name: metrics_queue_depths --
-- Jobs per queue that are waiting (available now), scheduled (available later), running or dead,
-- and the age of the oldest waiting one. Each part reads a partial index, never the finished jobs:
-- queued rows the two claim indexes (one predicate each, so that the planner can use them),
-- running ones queue_running_idx, dead ones queue_finished_queue_idx (migration 0022). Completed and
-- cancelled jobs are counted by lamplighter.job_counters instead. Paused queues with no job are
-- listed too.
WITH clock AS MATERIALIZED (
    -- Read once: lamplighter.now() per row costs more than the rest of the count.
    SELECT lamplighter.now() AS now
), queued AS (
    SELECT queue_name, available_at FROM dramatiq.queue WHERE state = 'queued' AND concurrency_key IS NULL
    UNION ALL
    SELECT queue_name, available_at FROM dramatiq.queue WHERE state = 'queued' AND concurrency_key IS NOT NULL
), waiting AS (
    SELECT queue_name,
           count(*) FILTER (WHERE available_at <= clock.now) AS waiting,
           count(*) FILTER (WHERE available_at > clock.now) AS scheduled,
           extract(epoch FROM min(clock.now) - min(available_at) FILTER (WHERE available_at <= clock.now))
               AS oldest_waiting_age
    FROM queued CROSS JOIN clock
    GROUP BY queue_name
), running AS (
    SELECT queue_name, count(*) AS running FROM dramatiq.queue WHERE state = 'running' GROUP BY queue_name
), dead AS (
    SELECT queue_name, count(*) AS dead FROM dramatiq.queue WHERE state = 'dead' GROUP BY queue_name
), names AS (
    SELECT queue_name FROM waiting UNION SELECT queue_name FROM running
    UNION SELECT queue_name FROM dead UNION SELECT name FROM lamplighter.queues
)
SELECT n.queue_name, coalesce(w.waiting, 0) AS waiting, coalesce(w.scheduled, 0) AS scheduled,
       coalesce(r.running, 0) AS running, coalesce(d.dead, 0) AS dead,
       coalesce(w.oldest_waiting_age, 0)::double precision AS oldest_waiting_age,
       coalesce(p.paused, false) AS paused
FROM names n
LEFT JOIN waiting w USING (queue_name)
LEFT JOIN running r USING (queue_name)
LEFT JOIN dead d USING (queue_name)
LEFT JOIN lamplighter.queues p ON p.name = n.queue_name
ORDER BY n.queue_name;

-- name: metrics_platform --
-- One row: live workers (a heartbeat within the lease), of which stopping; the scheduler's
-- lease (holder, whether it is current, seconds since its last renewal); open alerts as a JSON
-- object {rule: count}.
SELECT (SELECT count(*) FROM lamplighter.workers
        WHERE heartbeat_at > lamplighter.now() - make_interval(secs => %(lease_seconds)s)) AS workers_live,
       (SELECT count(*) FROM lamplighter.workers
        WHERE stopping AND heartbeat_at > lamplighter.now() - make_interval(secs => %(lease_seconds)s)) AS workers_stopping,
       l.holder AS leader,
       coalesce(l.expires_at > lamplighter.now(), false) AS leader_current,
       extract(epoch FROM lamplighter.now() - l.renewed_at)::double precision AS lease_age,
       (SELECT coalesce(jsonb_object_agg(rule, open), '{}')
        FROM (SELECT rule, count(*) AS open FROM lamplighter.alerts WHERE resolved_at IS NULL GROUP BY rule) AS a
       ) AS open_alerts
FROM (SELECT 1) AS one
LEFT JOIN lamplighter.scheduler_lease l ON l.name = 'scheduler';

-- name: metrics_job_counters --
-- Attempts and run time per actor, outcome and run-time bucket, the shards summed (migration
-- 0012), with the buckets' bounds. Only ever grows; pruning the history leaves it alone.
SELECT actor_name, outcome, bucket, sum(attempts)::bigint AS attempts, sum(run_seconds) AS run_seconds
FROM lamplighter.job_counters
GROUP BY actor_name, outcome, bucket
ORDER BY actor_name, outcome, bucket;

-- name: metrics_run_time_bounds --
SELECT lamplighter.run_time_bounds_v1() AS bounds;
