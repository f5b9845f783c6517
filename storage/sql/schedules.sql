-- Schedules, their ticks and the scheduler's leader lease (scheduler/, migration 0003).

-- name: schedule_list --
-- Every schedule with its latest tick (by the time it was recorded) and that tick's job state;
-- job_state is NULL when the job has been pruned.
SELECT s.key, s.actor_name, s.queue_name, s.priority, s.max_attempts, s.concurrency_key,
       s.concurrency_limit, s.cron, s.zone, s.args, s.kwargs, s.misfire, s.grace_seconds, s.overlap,
       s.enabled, s.paused, s.paused_by, s.paused_at, s.last_fire_at, s.next_fire_at,
       t.fire_at AS last_tick_fire_at, t.kind AS last_tick_kind, t.outcome AS last_tick_outcome,
       t.job_id AS last_tick_job_id, t.missed AS last_tick_missed, q.state AS last_job_state
FROM lamplighter.schedules s
LEFT JOIN LATERAL (
    SELECT fire_at, kind, outcome, job_id, missed
    FROM lamplighter.schedule_ticks
    WHERE schedule_key = s.key
    ORDER BY recorded_at DESC, fire_at DESC
    LIMIT 1
) t ON true
LEFT JOIN dramatiq.queue q ON q.message_id = t.job_id
WHERE %(key)s::text IS NULL OR s.key = %(key)s
ORDER BY s.key;

-- name: schedule_lock_all --
-- The release step's sync: one sync at a time (a second waits), while the scheduler keeps
-- reading; its row locks (FOR UPDATE) wait for the sync's commit.
LOCK TABLE lamplighter.schedules IN SHARE ROW EXCLUSIVE MODE;

-- name: schedule_all --
SELECT *, lamplighter.now() AS now FROM lamplighter.schedules ORDER BY key;

-- name: schedule_insert --
INSERT INTO lamplighter.schedules (
    key, actor_name, queue_name, priority, max_attempts, concurrency_key, concurrency_limit, cron,
    zone, args, kwargs, misfire, grace_seconds, overlap, next_fire_at)
VALUES (
    %(key)s, %(actor_name)s, %(queue_name)s, %(priority)s, %(max_attempts)s, %(concurrency_key)s,
    %(concurrency_limit)s, %(cron)s, %(zone)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(misfire)s,
    %(grace_seconds)s, %(overlap)s, %(next_fire_at)s);

-- name: schedule_update_declared --
-- A declaration changed (or came back): its declared fields and enabled; never paused.
UPDATE lamplighter.schedules SET
    actor_name = %(actor_name)s, queue_name = %(queue_name)s, priority = %(priority)s,
    max_attempts = %(max_attempts)s, concurrency_key = %(concurrency_key)s,
    concurrency_limit = %(concurrency_limit)s, cron = %(cron)s, zone = %(zone)s,
    args = %(args)s::jsonb, kwargs = %(kwargs)s::jsonb, misfire = %(misfire)s,
    grace_seconds = %(grace_seconds)s, overlap = %(overlap)s, enabled = true,
    next_fire_at = %(next_fire_at)s, updated_at = lamplighter.now()
WHERE key = %(key)s;

-- name: schedule_disable --
-- The declaration is gone from the code: keep the row and its ticks, stop firing.
UPDATE lamplighter.schedules SET enabled = false, updated_at = lamplighter.now()
WHERE key = %(key)s;

-- name: schedule_set_paused --
-- The operator's switch. Resuming sets the next fire time after now: the ticks of the paused
-- period are not caught up (next_fire_at is computed by the caller).
UPDATE lamplighter.schedules SET
    paused = %(paused)s,
    paused_by = CASE WHEN %(paused)s THEN %(by)s END,
    paused_at = CASE WHEN %(paused)s THEN lamplighter.now() END,
    next_fire_at = coalesce(%(next_fire_at)s, next_fire_at),
    updated_at = lamplighter.now()
WHERE key = %(key)s
RETURNING key;

-- name: schedule_due_keys --
-- The leader's poll: schedules whose next fire time has come (index schedules_due_idx).
SELECT key FROM lamplighter.schedules
WHERE enabled AND NOT paused AND next_fire_at <= lamplighter.now()
ORDER BY next_fire_at
LIMIT %(limit)s;

-- name: schedule_lock_due --
-- One due schedule, locked for its tick. SKIP LOCKED: a second scheduler that believes it
-- leads moves on instead of queueing behind; the tick key would stop it anyway.
SELECT *, lamplighter.now() AS now FROM lamplighter.schedules
WHERE key = %(key)s AND enabled AND NOT paused AND next_fire_at <= lamplighter.now()
FOR UPDATE SKIP LOCKED;

-- name: schedule_lock_one --
SELECT *, lamplighter.now() AS now FROM lamplighter.schedules WHERE key = %(key)s FOR UPDATE;

-- name: schedule_advance --
UPDATE lamplighter.schedules SET
    last_fire_at = coalesce(%(last_fire_at)s, last_fire_at),
    next_fire_at = %(next_fire_at)s,
    updated_at = lamplighter.now()
WHERE key = %(key)s;

-- name: schedule_run_active --
-- Overlap policy "skip": a run of this schedule still waiting or running (index
-- queue_schedule_active_idx; the scheduler writes enqueued_by = 'cron:<key>@<fire time>').
SELECT message_id FROM dramatiq.queue
WHERE split_part(enqueued_by, '@', 1) = 'cron:' || %(key)s
  AND state IN ('queued', 'running') AND enqueued_by LIKE 'cron:%%'
LIMIT 1;

-- name: schedule_tick_insert --
-- The tick. Nothing comes back when (key, fire time) is already recorded: someone else has
-- dealt with this tick and the caller must not enqueue.
INSERT INTO lamplighter.schedule_ticks (schedule_key, fire_at, kind, outcome, job_id, missed, recorded_by)
VALUES (%(key)s, %(fire_at)s, %(kind)s, %(outcome)s, %(job_id)s, %(missed)s, %(recorded_by)s)
ON CONFLICT (schedule_key, fire_at) DO NOTHING
RETURNING fire_at;

-- name: schedule_ticks_for --
SELECT schedule_key, fire_at, kind, outcome, job_id, missed, recorded_at, recorded_by
FROM lamplighter.schedule_ticks
WHERE schedule_key = %(key)s
ORDER BY fire_at DESC
LIMIT %(limit)s;

-- name: schedule_tick_prune --
-- One bounded batch of ticks older than the retention (index schedule_ticks_fire_at_idx).
-- Only ticks long past every schedule's next fire time go, so the key still guards every
-- tick that could be fired again.
DELETE FROM lamplighter.schedule_ticks
WHERE (schedule_key, fire_at) IN (
    SELECT schedule_key, fire_at FROM lamplighter.schedule_ticks
    WHERE fire_at < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
    LIMIT %(batch_size)s);

-- name: schedule_now --
SELECT lamplighter.now();

-- name: lease_acquire --
-- Take the lease if it is free or expired, or renew it if we hold it; a row comes back only
-- when we hold it afterwards. Timed by the database's clock, like every TTL.
WITH previous AS (
    SELECT holder FROM lamplighter.scheduler_lease WHERE name = 'scheduler'
), taken AS (
    INSERT INTO lamplighter.scheduler_lease AS l (name, holder, acquired_at, renewed_at, expires_at)
    VALUES ('scheduler', %(holder)s, lamplighter.now(), lamplighter.now(),
            lamplighter.now() + make_interval(secs => %(ttl_seconds)s))
    ON CONFLICT (name) DO UPDATE SET
        holder = EXCLUDED.holder,
        acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE EXCLUDED.acquired_at END,
        renewed_at = EXCLUDED.renewed_at,
        expires_at = EXCLUDED.expires_at
    WHERE l.holder = EXCLUDED.holder OR l.expires_at <= lamplighter.now()
    RETURNING l.holder, l.acquired_at, l.expires_at
)
SELECT t.holder, t.acquired_at, t.expires_at, (SELECT holder FROM previous) AS previous_holder
FROM taken t;

-- name: lease_held --
-- Inside a tick's transaction: do we still hold an unexpired lease?
SELECT 1 FROM lamplighter.scheduler_lease
WHERE name = 'scheduler' AND holder = %(holder)s AND expires_at > lamplighter.now();

-- name: lease_release --
DELETE FROM lamplighter.scheduler_lease WHERE name = 'scheduler' AND holder = %(holder)s;

-- name: lease_get --
SELECT holder, acquired_at, renewed_at, expires_at, expires_at > lamplighter.now() AS live
FROM lamplighter.scheduler_lease WHERE name = 'scheduler';
