-- Worker registry, heartbeats and the rescue of jobs held by dead workers.

-- name: worker_register --
INSERT INTO lamplighter.workers (id, hostname, pid, queues, version)
VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(queues)s, %(version)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = lamplighter.now(), stopping = false;

-- name: worker_heartbeat --
-- Timed by the database clock, so skew between machines does not matter.
UPDATE lamplighter.workers SET heartbeat_at = lamplighter.now(), stopping = %(stopping)s
WHERE id = %(worker_id)s
RETURNING id;

-- name: worker_peers --
-- Live, not stopping workers of each queue, in id order. A consumer's place in its queue's list
-- decides which enqueue wake-ups it answers at once and which only if nobody else did
-- (storage/wakeups.py): an idle fleet answers a single job with one claim, not one per worker.
SELECT q.queue_name, array_agg(w.id::text ORDER BY w.id) AS worker_ids
FROM lamplighter.workers w, unnest(w.queues) AS q(queue_name)
WHERE NOT w.stopping AND w.heartbeat_at > lamplighter.now() - make_interval(secs => %(lease_seconds)s)
GROUP BY q.queue_name;

-- name: worker_unregister --
DELETE FROM lamplighter.workers WHERE id = %(worker_id)s;

-- name: worker_rescue_lost --
-- Run by every live worker on its heartbeat. Workers silent for longer than the lease are
-- removed; running jobs owned by no live worker go back to the queue. An attempt that had
-- started is recorded as 'lost' in history; one that was its last goes dead.
WITH expired AS (
    DELETE FROM lamplighter.workers
    WHERE heartbeat_at < lamplighter.now() - make_interval(secs => %(lease_seconds)s)
    RETURNING id
), orphans AS (
    SELECT q.message_id, q.attempt, q.started_at, q.worker_id, q.actor_name, q.queue_name,
           q.tenant_id, q.max_attempts
    FROM dramatiq.queue q
    WHERE q.state = 'running'
      AND (q.worker_id IN (SELECT id FROM expired)
           OR NOT EXISTS (SELECT 1 FROM lamplighter.workers w WHERE w.id = q.worker_id))
      AND q.claimed_at < lamplighter.now() - make_interval(secs => %(lease_seconds)s)
    FOR UPDATE OF q SKIP LOCKED
), rescued AS (
    UPDATE dramatiq.queue AS q
    SET state = CASE WHEN o.started_at IS NOT NULL AND o.max_attempts IS NOT NULL
                          AND o.attempt >= o.max_attempts THEN 'dead' ELSE 'queued' END,
        worker_id = NULL, claimed_at = NULL, started_at = NULL, mtime = lamplighter.now(),
        available_at = lamplighter.now(),
        last_error = CASE WHEN o.started_at IS NOT NULL
                          THEN 'WorkerLost: worker ' || o.worker_id || ' stopped heartbeating during attempt ' || o.attempt
                          ELSE q.last_error END,
        finished_at = CASE WHEN o.started_at IS NOT NULL AND o.max_attempts IS NOT NULL
                                AND o.attempt >= o.max_attempts THEN lamplighter.now() END
    FROM orphans o
    WHERE q.message_id = o.message_id
    RETURNING q.message_id, q.state
), recorded AS (
    INSERT INTO lamplighter.job_history (
        job_id, attempt, actor_name, queue_name, tenant_id, worker_id, started_at,
        finished_at, duration_ms, outcome, error_type, error_message)
    SELECT o.message_id, o.attempt, o.actor_name, o.queue_name, o.tenant_id, o.worker_id,
           o.started_at, lamplighter.now(),
           extract(epoch FROM lamplighter.now() - o.started_at) * 1000, 'lost', 'WorkerLost',
           'worker ' || o.worker_id || ' stopped heartbeating; job returned to the queue'
    FROM orphans o JOIN rescued r USING (message_id)
    WHERE o.started_at IS NOT NULL
    ON CONFLICT (job_id, attempt) DO NOTHING
    RETURNING job_id
)
SELECT (SELECT count(*) FROM expired) AS workers_expired,
       (SELECT count(*) FROM rescued) AS jobs_rescued,
       (SELECT count(*) FROM recorded) AS attempts_lost;

-- name: worker_list --
SELECT w.id, w.hostname, w.pid, w.queues, w.version, w.started_at,
       extract(epoch FROM lamplighter.now() - w.heartbeat_at) AS heartbeat_age,
       w.stopping,
       (SELECT count(*) FROM dramatiq.queue q
        WHERE q.state = 'running' AND q.worker_id = w.id AND q.started_at IS NOT NULL) AS running_jobs
FROM lamplighter.workers w
ORDER BY w.hostname, w.pid;

-- name: actor_register_many --
INSERT INTO lamplighter.actors (name, queue_name, priority, options)
SELECT name, queue_name, priority, options
FROM jsonb_to_recordset(%(actors)s::jsonb) AS a(name text, queue_name text, priority integer, options jsonb)
ON CONFLICT (name) DO UPDATE SET queue_name = EXCLUDED.queue_name, priority = EXCLUDED.priority,
    options = EXCLUDED.options, last_seen = lamplighter.now();
