-- The engine's second pass (storage/engine/).

-- ---- claim tokens ----------------------------------------------------------------------------
-- Every claim writes a token of its own into the rows it takes; every start, finish, release and
-- hand-back names the token. A worker that was declared dead (and rescued) while it still ran
-- a job can then never overwrite the records of the job's next claim, even if that claim is its
-- own, which worker id and attempt number alone could not tell apart. Rows claimed by a worker
-- of an earlier release keep a NULL token and are finished by worker id, as before.
ALTER TABLE dramatiq.queue ADD COLUMN IF NOT EXISTS claim_token bigint;

-- ---- claim indexes ---------------------------------------------------------------------------
-- The claim read queued rows in (priority, available_at) order and filtered out those whose
-- concurrency key had no free slot: 100,000 jobs behind one saturated key were read (and a slot
-- looked up for each) by every claim of every consumer. Jobs without a key and jobs with one now
-- sit in separate partial indexes; keyed jobs are read per key, only for keys with a free slot.
-- (Workers of the previous release, during a rolling deploy, claim without the index.)
CREATE INDEX IF NOT EXISTS queue_claim_unkeyed_idx
    ON dramatiq.queue (queue_name, priority, available_at)
    WHERE state = 'queued' AND concurrency_key IS NULL;
CREATE INDEX IF NOT EXISTS queue_claim_keyed_idx
    ON dramatiq.queue (concurrency_key, queue_name, priority, available_at)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
DROP INDEX IF EXISTS dramatiq.queue_claim_idx;

-- ---- the one rescue --------------------------------------------------------------------------
-- Running jobs a worker no longer holds go back to the queue: the rescue of a dead worker's jobs
-- (workers.sql, worker_rescue_lost) and a worker's own rows whose finish it lost
-- (worker_reconcile). Each job is named with the claim token it was read with, so a job claimed
-- again meanwhile is left alone. An attempt that had started is recorded as 'lost'; one that was
-- its last goes dead. Concurrency slots the jobs held are freed.
CREATE OR REPLACE FUNCTION lamplighter.job_rescue_v1(p_message_ids uuid[], p_tokens bigint[], p_reason text)
RETURNS TABLE (message_id uuid, state text, attempt_lost boolean)
LANGUAGE sql VOLATILE AS $$
    WITH named AS (
        SELECT * FROM unnest(p_message_ids, p_tokens) AS n(message_id, claim_token)
    ), orphans AS (
        SELECT q.message_id, q.attempt, q.started_at, q.worker_id, q.actor_name, q.queue_name,
               q.tenant_id, q.max_attempts, q.concurrency_key
        FROM dramatiq.queue q JOIN named n ON n.message_id = q.message_id
        WHERE q.state = 'running' AND q.claim_token IS NOT DISTINCT FROM n.claim_token
        FOR UPDATE OF q SKIP LOCKED
    ), rescued AS (
        UPDATE dramatiq.queue AS q
        SET state = CASE WHEN o.started_at IS NOT NULL AND o.max_attempts IS NOT NULL
                              AND o.attempt >= o.max_attempts THEN 'dead' ELSE 'queued' END,
            worker_id = NULL, claimed_at = NULL, started_at = NULL, claim_token = NULL,
            mtime = lamplighter.now(), available_at = lamplighter.now(),
            last_error = CASE WHEN o.started_at IS NOT NULL
                              THEN 'WorkerLost: worker ' || o.worker_id || ' ' || p_reason
                                   || ' during attempt ' || o.attempt
                              ELSE q.last_error END,
            finished_at = CASE WHEN o.started_at IS NOT NULL AND o.max_attempts IS NOT NULL
                                    AND o.attempt >= o.max_attempts THEN lamplighter.now() END
        FROM orphans o
        WHERE q.message_id = o.message_id
        RETURNING q.message_id, q.state
    ), freed AS (
        UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
        FROM orphans o JOIN rescued r USING (message_id)
        WHERE o.concurrency_key IS NOT NULL AND s.key = o.concurrency_key AND s.holder = o.message_id
    ), recorded AS (
        INSERT INTO lamplighter.job_history (
            job_id, attempt, actor_name, queue_name, tenant_id, worker_id, started_at,
            finished_at, duration_ms, outcome, error_type, error_message)
        SELECT o.message_id, o.attempt, o.actor_name, o.queue_name, o.tenant_id, o.worker_id,
               o.started_at, lamplighter.now(),
               extract(epoch FROM lamplighter.now() - o.started_at) * 1000, 'lost', 'WorkerLost',
               'worker ' || o.worker_id || ' ' || p_reason || '; job returned to the queue'
        FROM orphans o JOIN rescued r USING (message_id)
        WHERE o.started_at IS NOT NULL
        ON CONFLICT (job_id, attempt) DO NOTHING
        RETURNING job_id
    )
    SELECT r.message_id, r.state, r.message_id IN (SELECT job_id FROM recorded)
    FROM rescued r
$$;

-- ---- re-sends --------------------------------------------------------------------------------
-- A client that retries enqueue(msg) after an ambiguous failure re-sends an existing message id.
-- Only a finished job may be queued again by it; a waiting or running one is left as it is (the
-- re-send took over a running job, which then ran twice). The body is 0006_wake_tickets.sql's
-- with only the ON CONFLICT clause changed; the name and signature stay, so the workers of the
-- previous release keep calling it during a rolling deploy.
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
                claim_token = NULL, mtime = lamplighter.now()
            WHERE q.state IN ('completed', 'dead', 'cancelled');
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
