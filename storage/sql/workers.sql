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
-- Run by every live worker on its heartbeat (storage/engine/presence.py decides when it may).
-- Workers silent for longer than the lease are removed; running jobs owned by no live worker go
-- back to the queue (lamplighter.job_rescue_v3). Right after the server (re)started nobody is
-- declared dead: every worker lost its connections at once and reconnects with backoff, so a
-- heartbeat older than the server says nothing until %(server_grace_seconds)s (the lease plus the
-- longest reconnect backoff) have passed since the server started. now(), not lamplighter.now():
-- the server's start time is on the real clock.
-- An attempt whose start was recorded comes back as a `lost` history row. A job whose start was
-- not recorded was claimed but not started, or started in the flush window before the worker
-- died (a short job's start is committed with its finish, storage/engine/lifecycle.py): nobody
-- can tell which, so no attempt is counted, and its record says so instead, as a `rescued` event;
-- job_rescue_v3 counts the hand-back on the row (unconfirmed_rescues, migration 0027), and the
-- job's next run starts only once its start is committed: a job that kills its worker as it
-- starts spends its attempts instead of killing workers for ever.
WITH settled AS (
    SELECT now() - pg_postmaster_start_time() > make_interval(secs => %(server_grace_seconds)s) AS yes
), expired AS (
    DELETE FROM lamplighter.workers
    WHERE heartbeat_at < lamplighter.now() - make_interval(secs => %(lease_seconds)s)
      AND (SELECT yes FROM settled)
    RETURNING id
), orphans AS (
    SELECT q.message_id, q.claim_token, q.worker_id, q.attempt, q.started_at IS NULL AS unstarted
    FROM dramatiq.queue q
    WHERE q.state = 'running'
      AND (q.worker_id IN (SELECT id FROM expired)
           OR NOT EXISTS (SELECT 1 FROM lamplighter.workers w WHERE w.id = q.worker_id))
      AND q.claimed_at < lamplighter.now() - make_interval(secs => %(lease_seconds)s)
      AND (SELECT yes FROM settled)
), rescued AS (
    SELECT r.*
    FROM (SELECT coalesce(array_agg(message_id), '{}') AS ids, coalesce(array_agg(claim_token), '{}') AS tokens
          FROM orphans) AS o,
         lamplighter.job_rescue_v3(o.ids, o.tokens, 'stopped heartbeating', true) AS r
), noted AS (
    INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
    SELECT o.message_id, 'rescued', 'lamplighter',
           jsonb_build_object('worker_id', o.worker_id, 'attempt', o.attempt + 1, 'start_recorded', false,
                              'reason', 'worker ' || o.worker_id || ' stopped heartbeating holding this job '
                                        || 'without a recorded start: claimed and not started, or started in '
                                        || 'its last flush window and cut short; back in the queue, '
                                        || 'no attempt counted')
    FROM orphans o JOIN rescued r USING (message_id)
    WHERE o.unstarted
    RETURNING job_id
)
SELECT (SELECT count(*) FROM expired) AS workers_expired,
       (SELECT count(*) FROM rescued) AS jobs_rescued,
       (SELECT count(*) FROM rescued WHERE attempt_lost) AS attempts_lost,
       (SELECT count(*) FROM noted) AS unstarted_noted;

-- name: worker_reconcile --
-- On each heartbeat: rows this worker holds as running, claimed more than a lease ago, that it
-- neither runs nor has a pending write for (%(known)s): a finish the database refused until the
-- finisher gave up, or a claim whose answer was lost. They go back to the queue like a dead
-- worker's jobs, so no row stays 'running' for ever under a live worker. The worker is alive, so
-- none of them killed it: no unconfirmed rescue is counted (job_rescue_v3's last argument).
WITH strays AS (
    SELECT coalesce(array_agg(q.message_id), '{}') AS ids, coalesce(array_agg(q.claim_token), '{}') AS tokens
    FROM dramatiq.queue q
    WHERE q.worker_id = %(worker_id)s AND q.state = 'running'
      AND q.claimed_at < lamplighter.now() - make_interval(secs => %(lease_seconds)s)
      AND q.message_id <> ALL(%(known)s::text[]::uuid[])
), rescued AS (
    SELECT r.* FROM strays s, lamplighter.job_rescue_v3(s.ids, s.tokens, 'no longer runs it (its finish was lost)', false) AS r
)
SELECT (SELECT count(*) FROM rescued) AS jobs_rescued,
       (SELECT count(*) FROM rescued WHERE attempt_lost) AS attempts_lost;

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
