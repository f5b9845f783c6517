-- SQL enqueue with the options Python enqueue has (tenant_id, correlation_id, eta), callable by a
-- role that may do nothing else.
--
-- lamplighter.enqueue_v1 holds the body; lamplighter.enqueue stays the documented name, a thin
-- SECURITY DEFINER wrapper around it. A role that may only execute the wrapper (the release step
-- grants it to lamplighter_enqueue: storage/enqueue_role.py) enqueues without any right on
-- dramatiq.queue. Both functions run with a fixed search_path and name every object by schema,
-- so a caller's search_path or temporary objects cannot stand in for ours. A later rewrite adds
-- enqueue_v2 and replaces the wrapper's body in place (CREATE OR REPLACE keeps its grants).
--
-- The old 6-argument signature is dropped, not kept beside the new one: with defaults on both, a
-- call such as enqueue('maintenance.ping') would match both and PostgreSQL would refuse it as
-- ambiguous. The new signature starts with the same six parameters (names, order and meaning), so
-- every existing call, positional or named, resolves to it. delay's default becomes NULL (it was
-- '0', which means the same) so that a delay given together with an eta can be told apart.

DROP FUNCTION IF EXISTS lamplighter.enqueue(text, jsonb, text, interval, integer, text);

-- p_enqueued_by is the provenance recorded on the row: the wrapper passes 'sql:' || session_user;
-- code running as the owner (an HTTP API) may pass its own.
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
    new_id uuid := gen_random_uuid();
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

-- session_user, not current_user: inside a SECURITY DEFINER function current_user is the owner.
-- (A session that did SET ROLE is recorded under the role it logged in as.)
CREATE OR REPLACE FUNCTION lamplighter.enqueue(
    actor text, args jsonb DEFAULT '[]', queue text DEFAULT NULL, delay interval DEFAULT NULL,
    priority integer DEFAULT NULL, unique_key text DEFAULT NULL, tenant_id text DEFAULT NULL,
    correlation_id text DEFAULT NULL, eta timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT lamplighter.enqueue_v1(actor, args, queue, delay, priority, unique_key, tenant_id,
                                  correlation_id, eta, 'sql:' || session_user)
$$;

-- Functions are executable by PUBLIC when created; a SECURITY DEFINER one must not be, not even
-- until the release step has granted it (storage/enqueue_role.py). The owner keeps its rights.
REVOKE ALL ON FUNCTION lamplighter.enqueue(text, jsonb, text, interval, integer, text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION lamplighter.enqueue_v1(text, jsonb, text, interval, integer, text, text, text, timestamptz, text) FROM PUBLIC;
