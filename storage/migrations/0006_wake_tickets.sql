-- Wake-ups from the database's own enqueue paths carry a ticket, like every other enqueue.
--
-- lamplighter.enqueue() (SQL enqueue) and lamplighter.job_insert_unique() (every job with a
-- unique key) sent an empty payload, which wakes every idle consumer of the queue at once:
-- one claim finds the job, the others find nothing. They now send the ticket payload that
-- storage/wakeups.py reads ('t<ticket>:<jobs>'), so one job wakes one consumer. The bodies
-- below are those of 0002_job_semantics.sql with only the pg_notify calls changed.

CREATE OR REPLACE FUNCTION lamplighter.wake(queue_name text, jobs bigint) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_notify('dramatiq.' || queue_name || '.enqueue',
                     't' || floor(random() * 2147483647)::bigint || ':' || jobs)
$$;

CREATE OR REPLACE FUNCTION lamplighter.job_insert_unique(
    p_message_id uuid, p_queue_name text, p_actor_name text, p_message jsonb, p_priority integer,
    p_delay_ms bigint, p_max_attempts integer, p_unique_key text, p_unique_states text[],
    p_on_conflict text, p_concurrency_key text, p_concurrency_limit integer, p_tenant_id text,
    p_correlation_id text, p_enqueued_by text, p_parent uuid)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    holder dramatiq.queue%ROWTYPE;
    run_at timestamptz := lamplighter.now() + coalesce(p_delay_ms, 0) * interval '1 millisecond';
    held text[] := ARRAY(SELECT DISTINCT s FROM unnest(coalesce(p_unique_states, '{}'::text[])
                                                          || ARRAY['queued', 'running']) AS s ORDER BY s);
BEGIN
    IF p_on_conflict NOT IN ('ignore', 'replace', 'reschedule_earlier', 'reschedule_later') THEN
        RAISE EXCEPTION 'unknown unique on-conflict policy %', p_on_conflict
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_parent IS NOT NULL THEN
        UPDATE dramatiq.queue SET unique_states = '{}'
        WHERE message_id = p_parent AND unique_key = p_unique_key AND state = 'running'
          AND message_id <> p_message_id;
    END IF;
    LOOP
        SELECT * INTO holder FROM dramatiq.queue
        WHERE unique_key = p_unique_key AND state = ANY (unique_states)
        FOR UPDATE;
        IF FOUND THEN
            IF holder.state = 'queued' AND p_on_conflict = 'replace' THEN
                UPDATE dramatiq.queue
                SET message = jsonb_set(p_message, '{message_id}', to_jsonb(holder.message_id::text)),
                    actor_name = p_actor_name, queue_name = p_queue_name, priority = p_priority,
                    available_at = run_at, unique_states = held,
                    max_attempts = CASE WHEN p_max_attempts IS NULL THEN NULL
                                        ELSE holder.attempt + p_max_attempts END,
                    concurrency_key = p_concurrency_key, concurrency_limit = p_concurrency_limit,
                    tenant_id = p_tenant_id, correlation_id = p_correlation_id, mtime = lamplighter.now()
                WHERE message_id = holder.message_id;
            ELSIF holder.state = 'queued' AND p_on_conflict = 'reschedule_earlier' AND run_at < holder.available_at
               OR holder.state = 'queued' AND p_on_conflict = 'reschedule_later' AND run_at > holder.available_at THEN
                UPDATE dramatiq.queue SET available_at = run_at, mtime = lamplighter.now()
                WHERE message_id = holder.message_id;
            END IF;
            IF holder.message_id <> p_message_id THEN
                INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
                VALUES (holder.message_id, 'unique_conflict', p_enqueued_by,
                        jsonb_build_object('policy', p_on_conflict, 'rejected_message_id', p_message_id,
                                           'holder_state', holder.state));
            END IF;
            IF holder.state = 'queued' THEN
                PERFORM lamplighter.wake(holder.queue_name, 1);
            END IF;
            RETURN holder.message_id;
        END IF;
        BEGIN
            INSERT INTO dramatiq.queue AS q (
                message_id, queue_name, actor_name, message, priority, available_at, enqueued_at,
                max_attempts, unique_key, unique_states, concurrency_key, concurrency_limit,
                tenant_id, correlation_id, enqueued_by, state)
            VALUES (p_message_id, p_queue_name, p_actor_name, p_message, coalesce(p_priority, 0), run_at,
                    lamplighter.now(), p_max_attempts, p_unique_key, held, p_concurrency_key,
                    p_concurrency_limit, p_tenant_id, p_correlation_id, p_enqueued_by, 'queued')
            ON CONFLICT (message_id) DO UPDATE SET
                state = 'queued', message = EXCLUDED.message, queue_name = EXCLUDED.queue_name,
                actor_name = EXCLUDED.actor_name, priority = EXCLUDED.priority,
                available_at = EXCLUDED.available_at, max_attempts = EXCLUDED.max_attempts,
                unique_key = EXCLUDED.unique_key, unique_states = EXCLUDED.unique_states,
                worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
                mtime = lamplighter.now();
            IF p_concurrency_key IS NOT NULL THEN
                INSERT INTO lamplighter.concurrency_slots (key, slot)
                SELECT p_concurrency_key, generate_series(1, coalesce(p_concurrency_limit, 1))
                ON CONFLICT DO NOTHING;
            END IF;
            PERFORM lamplighter.wake(p_queue_name, 1);
            RETURN p_message_id;
        EXCEPTION WHEN unique_violation THEN
            -- Another transaction took the key between our look-up and our insert; look again.
            NULL;
        END;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION lamplighter.enqueue(
    actor text, args jsonb DEFAULT '[]', queue text DEFAULT NULL, delay interval DEFAULT '0',
    priority integer DEFAULT NULL, unique_key text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    known lamplighter.actors%ROWTYPE;
    new_id uuid := gen_random_uuid();
    target_queue text;
    message jsonb;
    delay_ms bigint := floor(extract(epoch FROM coalesce(delay, '0')) * 1000);
    max_retries jsonb;
BEGIN
    SELECT * INTO known FROM lamplighter.actors a WHERE a.name = actor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lamplighter.enqueue: unknown actor %', actor
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'No deployment has registered this actor; its workers register actors when they start.';
    END IF;
    IF args IS NULL OR jsonb_typeof(args) NOT IN ('array', 'object') THEN
        RAISE EXCEPTION 'lamplighter.enqueue: args must be a JSON array (positional) or object (keyword arguments)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF delay_ms < 0 THEN
        RAISE EXCEPTION 'lamplighter.enqueue: delay must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    target_queue := coalesce(queue, known.queue_name);
    message := jsonb_build_object(
        'queue_name', target_queue,
        'actor_name', actor,
        'args', CASE WHEN jsonb_typeof(args) = 'array' THEN args ELSE '[]'::jsonb END,
        'kwargs', CASE WHEN jsonb_typeof(args) = 'object' THEN args ELSE '{}'::jsonb END,
        'options', '{}'::jsonb,
        'message_id', new_id::text,
        'message_timestamp', floor(extract(epoch FROM lamplighter.now()) * 1000)::bigint);
    max_retries := known.options -> 'max_retries';
    IF unique_key IS NOT NULL THEN
        RETURN lamplighter.job_insert_unique(
            new_id, target_queue, actor, message, coalesce(priority, known.priority), delay_ms,
            CASE WHEN jsonb_typeof(max_retries) = 'number' THEN (max_retries::text)::integer + 1 END,
            unique_key, NULL, 'ignore', NULL, NULL, NULL, NULL, 'sql:' || current_user, NULL);
    END IF;
    INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, priority, available_at,
                                enqueued_at, max_attempts, enqueued_by, state)
    VALUES (new_id, target_queue, actor, message, coalesce(priority, known.priority),
            lamplighter.now() + delay_ms * interval '1 millisecond', lamplighter.now(),
            CASE WHEN jsonb_typeof(max_retries) = 'number' THEN (max_retries::text)::integer + 1 END,
            'sql:' || current_user, 'queued');
    PERFORM lamplighter.wake(target_queue, 1);
    RETURN new_id;
END
$$;
