-- dramatiq's RateLimiterBackend on PostgreSQL (storage/rate_limits.py). A row past expires_at
-- (by lamplighter.now()) counts as absent. Times in milliseconds, as dramatiq gives them.

-- name: rate_limit_add --
-- Create the key with a value unless it exists (and has not expired). One row back iff added.
INSERT INTO lamplighter.rate_limits AS r (key, value, expires_at)
VALUES (%(key)s::text, %(value)s::bigint, lamplighter.now() + %(ttl)s::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, grants = NULL, holders = NULL, expires_at = EXCLUDED.expires_at
WHERE r.expires_at <= lamplighter.now()
RETURNING true;

-- name: rate_limit_change --
-- Add %(amount)s (negative to decrement) to the key (an absent key counts as 0) unless the
-- new value would leave [%(minimum)s, %(maximum)s]; the TTL starts again. One row back iff done.
INSERT INTO lamplighter.rate_limits AS r (key, value, expires_at)
SELECT %(key)s::text, %(amount)s::bigint, lamplighter.now() + %(ttl)s::bigint * interval '1 millisecond'
WHERE %(amount)s::bigint BETWEEN %(minimum)s::bigint AND %(maximum)s::bigint
   OR EXISTS (SELECT 1 FROM lamplighter.rate_limits e WHERE e.key = %(key)s::text)
ON CONFLICT (key) DO UPDATE
SET value = CASE WHEN r.expires_at <= lamplighter.now() THEN 0 ELSE r.value END + EXCLUDED.value,
    grants = NULL, holders = NULL, expires_at = EXCLUDED.expires_at
WHERE CASE WHEN r.expires_at <= lamplighter.now() THEN 0 ELSE r.value END + EXCLUDED.value
      BETWEEN %(minimum)s::bigint AND %(maximum)s::bigint
RETURNING true;

-- name: rate_limit_incr_and_sum --
-- A window limiter's increment: lamplighter.rate_limit_incr_and_sum_v1 (migration 0017).
SELECT lamplighter.rate_limit_incr_and_sum_v1(%(key)s::text, %(keys)s::text[], %(amount)s::bigint,
                                              %(maximum)s::bigint, %(ttl)s::bigint);

-- name: rate_limit_notify --
-- wait_notify: the event is kept for %(ttl)s ms (a waiter that comes later still sees it) and
-- announced on LISTEN to those waiting now (storage/listener.py).
WITH marked AS (
    INSERT INTO lamplighter.rate_limits AS r (key, value, expires_at)
    VALUES (%(key)s::text, 1, lamplighter.now() + %(ttl)s::bigint * interval '1 millisecond')
    ON CONFLICT (key) DO UPDATE SET value = CASE WHEN r.expires_at <= lamplighter.now() THEN 1 ELSE r.value + 1 END,
                                    expires_at = EXCLUDED.expires_at
    RETURNING r.key
)
SELECT pg_notify('lamplighter.rate_limits', key) FROM marked;

-- name: rate_limit_events --
-- The keys among %(keys)s with a live event (wait, wait_many).
SELECT key FROM lamplighter.rate_limits
WHERE key = ANY(%(keys)s::text[]) AND value > 0 AND expires_at > lamplighter.now();

-- name: rate_limit_take --
-- A declarative window limit's start (RateLimit): lamplighter.rate_limit_take_v1 (migration 0017).
-- 0 when the job may start now, else the milliseconds until its reserved start.
SELECT lamplighter.rate_limit_take_v1(%(key)s::text, %(limit)s::integer, %(window_ms)s::bigint,
                                      %(margin_ms)s::bigint, %(job_id)s::uuid);

-- name: rate_limit_prune --
-- One bounded batch of expired keys (SKIP LOCKED: never waits on a limiter in use).
WITH doomed AS (
    SELECT key FROM lamplighter.rate_limits
    WHERE expires_at <= lamplighter.now()
    ORDER BY expires_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lamplighter.rate_limits r USING doomed WHERE r.key = doomed.key;

-- name: group_members_prune --
-- One bounded batch of group members whose group ended before the retention.
WITH doomed AS (
    SELECT group_id, job_id FROM lamplighter.group_members
    WHERE at < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
    ORDER BY at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lamplighter.group_members g USING doomed WHERE g.group_id = doomed.group_id AND g.job_id = doomed.job_id;
