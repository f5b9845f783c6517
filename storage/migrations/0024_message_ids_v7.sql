-- Jobs enqueued by SQL get time-ordered ids, as the Python sends do (storage/engine/codec.py,
-- new_message_ids): a version 7 UUID (RFC 9562) starts with the Unix time in milliseconds, so a
-- job's key lands at the right edge of every index keyed by job id (the queue's primary key, the
-- history's (job_id, attempt)) next to the jobs enqueued around it. With random (version 4) ids
-- each insert touched a random leaf page, and the hourly prune and the history lookups of old
-- jobs read keys scattered over the whole index: at 10M history rows that is the difference
-- between reading a few pages and reading from disk (bench/history_scale.py).
--
-- PostgreSQL 18 has uuidv7(); 15 does not, so the function builds one from gen_random_uuid():
-- the first 48 bits replaced by the clock in milliseconds, the version nibble 0100 turned into
-- 0111 by setting its two low bits (bits 52 and 53, numbered from the right within each byte).
CREATE OR REPLACE FUNCTION lamplighter.new_message_id() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- enqueue_v1 as 0011 wrote it, but for its id. Same signature: the previous release's callers
-- and the enqueue() wrapper are unchanged.
CREATE OR REPLACE FUNCTION lamplighter.enqueue_v1(
    p_actor text, p_args jsonb, p_queue text, p_delay interval, p_priority integer,
    p_unique_key text, p_tenant_id text, p_correlation_id text, p_eta timestamptz,
    p_enqueued_by text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known lamplighter.actors%ROWTYPE;
    new_id uuid := lamplighter.new_message_id();
    now_at timestamptz := lamplighter.now();
    run_at timestamptz;
    target_queue text;
    message jsonb;
    max_retries jsonb;
    attempts_allowed integer;
BEGIN
    SELECT * INTO known FROM lamplighter.actors a WHERE a.name = p_actor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lamplighter.enqueue: unknown actor %', p_actor
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'No deployment has registered this actor; its workers register actors when they start.';
    END IF;
    IF p_args IS NULL OR jsonb_typeof(p_args) NOT IN ('array', 'object') THEN
        RAISE EXCEPTION 'lamplighter.enqueue: args must be a JSON array (positional) or object (keyword arguments)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_delay IS NOT NULL AND p_eta IS NOT NULL THEN
        RAISE EXCEPTION 'lamplighter.enqueue: pass delay or eta, not both'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'delay is relative to now (an interval), eta an absolute time (timestamptz).';
    END IF;
    IF p_delay < interval '0' THEN
        RAISE EXCEPTION 'lamplighter.enqueue: delay must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- An eta already past runs now: it does not move the job ahead of jobs waiting since earlier.
    run_at := CASE WHEN p_eta IS NOT NULL THEN greatest(p_eta, now_at)
                   ELSE now_at + coalesce(p_delay, interval '0') END;
    target_queue := coalesce(p_queue, known.queue_name);
    message := jsonb_build_object(
        'queue_name', target_queue,
        'actor_name', p_actor,
        'args', CASE WHEN jsonb_typeof(p_args) = 'array' THEN p_args ELSE '[]'::jsonb END,
        'kwargs', CASE WHEN jsonb_typeof(p_args) = 'object' THEN p_args ELSE '{}'::jsonb END,
        'options', '{}'::jsonb,
        'message_id', new_id::text,
        'message_timestamp', floor(extract(epoch FROM now_at) * 1000)::bigint);
    max_retries := known.options -> 'max_retries';
    attempts_allowed := CASE WHEN jsonb_typeof(max_retries) = 'number' THEN (max_retries::text)::integer + 1 END;
    IF p_unique_key IS NOT NULL THEN
        -- job_insert_unique takes a delay in milliseconds; rounded up, the job never runs before the eta.
        RETURN lamplighter.job_insert_unique(
            new_id, target_queue, p_actor, message, coalesce(p_priority, known.priority),
            ceil(extract(epoch FROM run_at - now_at) * 1000)::bigint, attempts_allowed,
            p_unique_key, NULL, 'ignore', NULL, NULL, p_tenant_id, p_correlation_id, p_enqueued_by, NULL);
    END IF;
    INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, priority, available_at,
                                enqueued_at, max_attempts, tenant_id, correlation_id, enqueued_by, state)
    VALUES (new_id, target_queue, p_actor, message, coalesce(p_priority, known.priority), run_at,
            now_at, attempts_allowed, p_tenant_id, p_correlation_id, p_enqueued_by, 'queued');
    PERFORM lamplighter.wake(target_queue, 1);
    RETURN new_id;
END
$$;
