-- Results, rate limits and group callbacks (issue 23): what dramatiq users get from Redis.

-- ---- rate limiter state ---------------------------------------------------------------------
-- One row per key of dramatiq's RateLimiterBackend (storage/rate_limits.py): concurrent, window
-- and bucket limiters' counters, barriers (a group's completion barrier among them) and their
-- "@events" markers. A key whose expires_at has passed (by lamplighter.now()) counts as absent;
-- storage.rate_limits.prune deletes such rows in batches.
-- A regular (logged) table, not UNLOGGED: an unlogged table is emptied by crash recovery and
-- not replicated, so a PostgreSQL crash or a failover would forget every barrier, and a group's
-- completion callbacks would never run. The backend commits its own statements with
-- synchronous_commit off instead: no wait for the WAL flush, and a crash may lose the limiter
-- updates of its last fraction of a second (a window may admit a few calls more once).
-- grants, holders: a declarative window limit's starts and reservations (time, job), see
-- lamplighter.rate_limit_take_v1 below.
CREATE TABLE IF NOT EXISTS lamplighter.rate_limits (
    key        text PRIMARY KEY,
    value      bigint NOT NULL DEFAULT 0,
    grants     timestamptz[],
    holders    uuid[],
    expires_at timestamptz NOT NULL
) WITH (fillfactor = 70);  -- room on the page: counter updates stay HOT
CREATE INDEX IF NOT EXISTS rate_limits_expires_idx ON lamplighter.rate_limits (expires_at);

-- The increment of a window limiter (dramatiq's incr_and_sum): ``p_key`` by ``p_amount`` unless
-- its value or the sum over ``p_keys`` would pass ``p_maximum``. The rows are locked in key
-- order, so two callers of the same window never both pass on the same remaining room.
CREATE OR REPLACE FUNCTION lamplighter.rate_limit_incr_and_sum_v1(
    p_key text, p_keys text[], p_amount bigint, p_maximum bigint, p_ttl_ms bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := lamplighter.now();
    own bigint;
    others bigint;
BEGIN
    INSERT INTO lamplighter.rate_limits (key, value, expires_at)
    VALUES (p_key, 0, at + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM lamplighter.rate_limits WHERE key = p_key OR key = ANY (p_keys) ORDER BY key FOR UPDATE;
    SELECT coalesce(max(value) FILTER (WHERE key = p_key), 0),
           coalesce(sum(value) FILTER (WHERE key <> p_key), 0)
    INTO own, others
    FROM lamplighter.rate_limits
    WHERE (key = p_key OR key = ANY (p_keys)) AND expires_at > at;
    IF own + p_amount > p_maximum OR own + others + p_amount > p_maximum THEN
        RETURN false;
    END IF;
    UPDATE lamplighter.rate_limits
    SET value = own + p_amount, grants = NULL, holders = NULL, expires_at = at + p_ttl_ms * interval '1 millisecond'
    WHERE key = p_key;
    RETURN true;
END
$$;

-- A declarative window limit (storage/rate_limits.py, RateLimit on an actor): may job ``p_job``
-- start now, with at most ``p_limit`` starts of ``p_key`` in any ``p_window_ms``? grants/holders
-- are a sliding log of starts and reservations (time, job). A job that may not start gets the
-- first time it may, which is reserved for it (so the jobs waiting on a key come back one after
-- the other, not all at once); when it comes back it is checked again against the starts as they
-- happened. ``p_margin_ms`` widens the window by the time between this check and the start the
-- worker records. Returns 0 (start now) or the milliseconds until the job's reserved time.
CREATE OR REPLACE FUNCTION lamplighter.rate_limit_take_v1(
    p_key text, p_limit integer, p_window_ms bigint, p_margin_ms bigint, p_job uuid)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := lamplighter.now();
    span interval := (p_window_ms + p_margin_ms) * interval '1 millisecond';
    own timestamptz;
    times timestamptz[];
    jobs uuid[];
    n integer;
    seen integer;
    slot timestamptz;
BEGIN
    INSERT INTO lamplighter.rate_limits (key, value, grants, holders, expires_at)
    VALUES (p_key, 0, '{}', '{}', at + span)
    ON CONFLICT (key) DO NOTHING;
    SELECT (SELECT max(e.g) FROM unnest(r.grants, r.holders) AS e(g, h) WHERE e.h = p_job),
           ARRAY(SELECT e.g FROM unnest(r.grants, r.holders) AS e(g, h)
                 WHERE e.g > at - span AND e.h IS DISTINCT FROM p_job ORDER BY e.g, e.h),
           ARRAY(SELECT e.h FROM unnest(r.grants, r.holders) AS e(g, h)
                 WHERE e.g > at - span AND e.h IS DISTINCT FROM p_job ORDER BY e.g, e.h)
    INTO own, times, jobs
    FROM lamplighter.rate_limits r WHERE r.key = p_key FOR UPDATE;
    IF own > at THEN  -- back before its reserved time
        RETURN ceil(extract(epoch FROM own - at) * 1000)::bigint;
    END IF;
    n := coalesce(array_length(times, 1), 0);
    -- A job new to the key queues behind the reservations; one coming back for its reserved
    -- time is checked against the starts up to now.
    seen := CASE WHEN own IS NULL THEN n ELSE (SELECT count(*) FROM unnest(times) AS t WHERE t <= at) END;
    IF seen < p_limit THEN
        slot := at;
    ELSIF own IS NULL THEN  -- behind every reservation: the first time the window has room after them
        slot := greatest(at + interval '1 millisecond', times[n - p_limit + 1] + span, times[n]);
    ELSE  -- came back to a window still full (earlier starts ran late): when the oldest start leaves it
        slot := greatest(at + interval '1 millisecond', times[seen - p_limit + 1] + span);
    END IF;
    UPDATE lamplighter.rate_limits
    SET grants = times || slot, holders = jobs || p_job, expires_at = slot + span
    WHERE key = p_key;
    RETURN CASE WHEN slot = at THEN 0 ELSE ceil(extract(epoch FROM slot - at) * 1000)::bigint END;
END
$$;

-- ---- group completion callbacks ----------------------------------------------------------------
-- One row per member of a dramatiq group with completion callbacks that completed, written by
-- the member's finish (storage/sql/jobs.sql, job_finish_many) in its transaction. The trigger
-- counts the group's barrier (a rate_limits row that group.run() created with the member count)
-- down once per member, whoever finishes it and however often (the primary key), and enqueues
-- the callbacks when it reaches zero: exactly once, in the transaction that records the last
-- member's completion. callbacks: the callback jobs as job_insert_many takes them, with fixed
-- message ids (each member carries the same list).
CREATE TABLE IF NOT EXISTS lamplighter.group_members (
    group_id   text NOT NULL,
    job_id     uuid NOT NULL,
    callbacks  jsonb NOT NULL,
    at         timestamptz NOT NULL DEFAULT lamplighter.now(),
    PRIMARY KEY (group_id, job_id)
);
CREATE INDEX IF NOT EXISTS group_members_at_idx ON lamplighter.group_members (at);

CREATE OR REPLACE FUNCTION lamplighter.group_member_done_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    remaining bigint;
BEGIN
    UPDATE lamplighter.rate_limits SET value = value - 1
    WHERE key = NEW.group_id AND expires_at > lamplighter.now()
    RETURNING value INTO remaining;
    IF remaining IS DISTINCT FROM 0 THEN  -- members still running, or a barrier gone (expired)
        RETURN NULL;
    END IF;
    WITH callbacks AS (
        SELECT * FROM jsonb_to_recordset(NEW.callbacks) AS j(
            message_id uuid, queue_name text, actor_name text, message jsonb, priority integer,
            max_attempts integer, concurrency_key text, concurrency_limit integer, tenant_id text,
            correlation_id text, enqueued_by text)
    ), inserted AS (
        INSERT INTO dramatiq.queue (
            message_id, queue_name, actor_name, message, priority, available_at, enqueued_at,
            max_attempts, concurrency_key, concurrency_limit, tenant_id, correlation_id, enqueued_by, state)
        SELECT message_id, queue_name, actor_name, message, coalesce(priority, 0), lamplighter.now(),
               lamplighter.now(), max_attempts, concurrency_key, concurrency_limit, tenant_id, correlation_id,
               enqueued_by, 'queued'
        FROM callbacks
        ON CONFLICT (message_id) DO NOTHING
        RETURNING queue_name
    ), slots AS (
        INSERT INTO lamplighter.concurrency_slots (key, slot)
        SELECT k.concurrency_key, generate_series(1, k.slots)
        FROM (SELECT concurrency_key, max(coalesce(concurrency_limit, 1)) AS slots
              FROM callbacks WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key) AS k
        ON CONFLICT DO NOTHING
    ), woken AS (
        SELECT lamplighter.wake(queue_name, jobs)
        FROM (SELECT queue_name, count(*) AS jobs FROM inserted GROUP BY queue_name) AS queues
    )
    SELECT count(*) INTO remaining FROM woken;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS group_members_count_down ON lamplighter.group_members;
CREATE TRIGGER group_members_count_down AFTER INSERT ON lamplighter.group_members
    FOR EACH ROW EXECUTE FUNCTION lamplighter.group_member_done_v1();

-- ---- results -----------------------------------------------------------------------------------
-- dramatiq results of actors declared with store_results=True, written by the job's finish
-- (job_finish_many) in the same statement; message_key is dramatiq's ResultBackend key (an md5 of
-- namespace, queue, actor and message id). A dead job's row holds dramatiq's wrapped exception,
-- which get_result raises as ResultFailure. Rows past expires_at count as absent and are pruned.
CREATE TABLE IF NOT EXISTS lamplighter.job_results (
    message_key text PRIMARY KEY,
    job_id      uuid,
    result      jsonb NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS job_results_expires_idx ON lamplighter.job_results (expires_at);

-- get_result(block=True) waits on LISTEN, not by polling: every stored result is announced on
-- the channel lamplighter.results with its key (storage/listener.py hands it to the waiter).
CREATE OR REPLACE FUNCTION lamplighter.job_result_announce_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lamplighter.results', NEW.message_key);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS job_results_announce ON lamplighter.job_results;
CREATE TRIGGER job_results_announce AFTER INSERT OR UPDATE ON lamplighter.job_results
    FOR EACH ROW EXECUTE FUNCTION lamplighter.job_result_announce_v1();
