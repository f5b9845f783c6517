-- Queue SQL: every statement that writes or claims a job row. Loaded by storage.queries.
-- Every time comparison uses lamplighter.now() (injectable clock).

-- name: job_insert_many --
-- The set-based insert for jobs without a unique key (those go through job_insert_unique_many).
-- %(jobs)s is a JSON array of objects; one statement for one job or ten thousand. Re-sending
-- an existing message_id queues a finished job again (stock dramatiq-pg semantics); a waiting
-- or running one is left as it is (a client retrying after an ambiguous failure). One small NOTIFY per
-- queue wakes workers; it carries a wake-up ticket and the job count, no message. Concurrency keys get their slot rows here.
WITH incoming AS (
    SELECT *
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS j(
        message_id uuid, queue_name text, actor_name text, message jsonb, priority integer,
        delay_ms bigint, max_attempts integer, concurrency_key text, concurrency_limit integer,
        tenant_id text, correlation_id text, enqueued_by text)
), inserted AS (
    INSERT INTO dramatiq.queue AS q (
        message_id, queue_name, actor_name, message, priority, available_at, enqueued_at,
        max_attempts, concurrency_key, concurrency_limit, tenant_id, correlation_id,
        enqueued_by, state)
    SELECT message_id, queue_name, actor_name, message, coalesce(priority, 0),
           lamplighter.now() + coalesce(delay_ms, 0) * interval '1 millisecond', lamplighter.now(),
           max_attempts, concurrency_key, concurrency_limit, tenant_id, correlation_id,
           enqueued_by, 'queued'
    FROM incoming
    ON CONFLICT (message_id) DO UPDATE SET
        state = 'queued', message = EXCLUDED.message, queue_name = EXCLUDED.queue_name,
        actor_name = EXCLUDED.actor_name, priority = EXCLUDED.priority,
        available_at = EXCLUDED.available_at, max_attempts = EXCLUDED.max_attempts,
        concurrency_key = EXCLUDED.concurrency_key, concurrency_limit = EXCLUDED.concurrency_limit,
        worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
        claim_token = NULL, mtime = lamplighter.now()
    WHERE q.state IN ('completed', 'dead', 'cancelled')
    RETURNING q.message_id, q.queue_name
), slots AS (
    INSERT INTO lamplighter.concurrency_slots (key, slot)
    SELECT k.concurrency_key, generate_series(1, k.slots)
    FROM (SELECT concurrency_key, max(coalesce(concurrency_limit, 1)) AS slots
          FROM incoming WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key) AS k
    ON CONFLICT DO NOTHING
), woken AS (
    SELECT pg_notify('dramatiq.' || queue_name || '.enqueue', 't' || floor(random() * 2147483647)::bigint || ':' || jobs)
    FROM (SELECT queue_name, count(*) AS jobs FROM inserted GROUP BY queue_name) AS queues
)
SELECT message_id FROM inserted, (SELECT count(*) FROM woken) AS w;

-- name: job_copy_in --
-- The bulk path for hundreds or more plain, immediate jobs (storage.jobs.enqueue_many): rows
-- streamed with COPY, about twice as fast per row as job_insert_many. Times, state and attempt
-- come from the column defaults (lamplighter.now(), 'queued', 0). An existing message_id fails
-- the whole COPY; the caller then re-sends the batch through job_insert_many's upsert.
COPY dramatiq.queue (message_id, queue_name, actor_name, message, priority, max_attempts, tenant_id,
                     correlation_id, enqueued_by)
FROM STDIN;

-- name: job_wake_queues --
-- One small NOTIFY per queue after a COPY, in its transaction: a wake-up ticket and the number
-- of jobs (storage/wakeups.py), never the message.
SELECT pg_notify('dramatiq.' || q.queue_name || '.enqueue', 't' || floor(random() * 2147483647)::bigint || ':' || q.jobs)
FROM unnest(%(queues)s::text[], %(counts)s::integer[]) AS q(queue_name, jobs);

-- name: job_insert_one --
-- The hot path of actor.send(): one job, no unique or concurrency key. Same effect as
-- job_insert_many, as a plain INSERT that plans in a fraction of the set-based statement.
WITH inserted AS (
    INSERT INTO dramatiq.queue AS q (
        message_id, queue_name, actor_name, message, priority, available_at, enqueued_at,
        max_attempts, tenant_id, correlation_id, enqueued_by, state)
    VALUES (%(message_id)s, %(queue_name)s, %(actor_name)s, %(message)s::jsonb, %(priority)s,
            lamplighter.now() + %(delay_ms)s * interval '1 millisecond', lamplighter.now(),
            %(max_attempts)s, %(tenant_id)s, %(correlation_id)s, %(enqueued_by)s, 'queued')
    ON CONFLICT (message_id) DO UPDATE SET
        state = 'queued', message = EXCLUDED.message, queue_name = EXCLUDED.queue_name,
        actor_name = EXCLUDED.actor_name, priority = EXCLUDED.priority,
        available_at = EXCLUDED.available_at, max_attempts = EXCLUDED.max_attempts,
        concurrency_key = NULL, concurrency_limit = NULL,
        worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
        claim_token = NULL, mtime = lamplighter.now()
    WHERE q.state IN ('completed', 'dead', 'cancelled')
    RETURNING q.message_id, q.queue_name
)
SELECT message_id, pg_notify('dramatiq.' || queue_name || '.enqueue', 't' || floor(random() * 2147483647)::bigint || ':1') FROM inserted;

-- name: job_insert_unique_set --
-- Jobs with a unique key and the "ignore" policy, not enqueued by the key's own running job
-- (storage.jobs.enqueue_many; a sweep's thousands of health checks): one set-based statement
-- with the same outcome as one lamplighter.job_insert_unique() per job, without a plpgsql call,
-- a subtransaction and a NOTIFY per job. A key already held keeps its holder, whose id comes back,
-- and the conflict is on record as the function records it; a key twice in the batch goes to
-- the first. Returns (n, message_id) for every job in order; message_id is NULL where this
-- statement cannot tell (a message_id already in the table, a holder committed after the
-- statement's snapshot): the caller sends those through job_insert_unique_many.
WITH incoming AS (
    SELECT j.*, ARRAY(SELECT DISTINCT s FROM unnest(coalesce(j.unique_states, '{}') || '{queued,running}'::text[]) AS s
                      ORDER BY s) AS held
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS j(
        n integer, message_id uuid, queue_name text, actor_name text, message jsonb, priority integer,
        delay_ms bigint, max_attempts integer, unique_key text, unique_states text[], concurrency_key text,
        concurrency_limit integer, tenant_id text, correlation_id text, enqueued_by text)
), fresh AS (
    SELECT * FROM incoming i
    WHERE NOT EXISTS (SELECT 1 FROM dramatiq.queue q WHERE q.message_id = i.message_id)
), inserted AS (
    INSERT INTO dramatiq.queue AS q (
        message_id, queue_name, actor_name, message, priority, available_at, enqueued_at,
        max_attempts, unique_key, unique_states, concurrency_key, concurrency_limit,
        tenant_id, correlation_id, enqueued_by, state)
    SELECT message_id, queue_name, actor_name, message, coalesce(priority, 0),
           lamplighter.now() + coalesce(delay_ms, 0) * interval '1 millisecond', lamplighter.now(),
           max_attempts, unique_key, held, concurrency_key, concurrency_limit,
           tenant_id, correlation_id, enqueued_by, 'queued'
    FROM fresh ORDER BY unique_key, n  -- keys in one order for every bulk sender: no deadlock between two sweeps
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state = ANY (unique_states) DO NOTHING
    RETURNING q.message_id, q.unique_key, q.queue_name, q.tenant_id, q.concurrency_key, q.concurrency_limit
), done AS (
    -- What was inserted, as objects to look keys up in: the CTEs' row estimates are guesses, and
    -- a join on them planned as a nested loop made the statement quadratic in the batch size.
    SELECT coalesce(jsonb_object_agg(message_id::text, true), '{}') AS ids,
           coalesce(jsonb_object_agg(unique_key, jsonb_build_array(message_id, queue_name, tenant_id)), '{}') AS keys
    FROM inserted
), holders AS (
    -- Not inserted: the key's holder is a job of this batch (inserted above, invisible to this
    -- statement's snapshot otherwise) or one committed before the statement began.
    SELECT f.n, f.message_id AS rejected, f.enqueued_by,
           coalesce((d.keys -> f.unique_key ->> 0)::uuid, theirs.message_id) AS holder,
           CASE WHEN d.keys ? f.unique_key THEN 'queued' ELSE theirs.state END AS holder_state,
           coalesce(d.keys -> f.unique_key ->> 1, theirs.queue_name) AS holder_queue,
           CASE WHEN d.keys ? f.unique_key THEN d.keys -> f.unique_key ->> 2 ELSE theirs.tenant_id END AS holder_tenant
    FROM fresh f
    CROSS JOIN done d
    LEFT JOIN LATERAL (
        SELECT q.message_id, q.state, q.queue_name, q.tenant_id FROM dramatiq.queue q
        WHERE q.unique_key = f.unique_key AND q.state = ANY (q.unique_states)
        LIMIT 1) AS theirs ON NOT d.keys ? f.unique_key
    WHERE NOT d.ids ? f.message_id::text
), conflicts AS (
    -- The row lamplighter.job_events' trigger writes for each event, written directly: the
    -- trigger's per-row subtransaction cost more than the rest of the statement.
    INSERT INTO lamplighter.audit_log (actor, action, target_type, target_id, tenant_id, details)
    SELECT coalesce(enqueued_by, 'unknown'), 'job.unique_conflict', 'job', holder::text, holder_tenant,
           jsonb_build_object('policy', 'ignore', 'rejected_message_id', rejected, 'holder_state', holder_state)
    FROM holders WHERE holder IS NOT NULL
), slots AS (
    INSERT INTO lamplighter.concurrency_slots (key, slot)
    SELECT k.concurrency_key, generate_series(1, k.slots)
    FROM (SELECT concurrency_key, max(coalesce(concurrency_limit, 1)) AS slots
          FROM inserted WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key) AS k
    ON CONFLICT DO NOTHING
), woken AS (
    -- One wake-up per queue for its new jobs and its waiting holders, as the function wakes per job.
    SELECT lamplighter.wake(w.queue_name, count(*)) FROM (
        SELECT queue_name FROM inserted
        UNION ALL SELECT holder_queue FROM holders WHERE holder_state = 'queued') AS w
    GROUP BY w.queue_name
), settled AS (
    SELECT coalesce(jsonb_object_agg(n::text, holder), '{}') AS holders FROM holders WHERE holder IS NOT NULL
)
SELECT i.n, CASE WHEN d.ids ? i.message_id::text THEN i.message_id::text
                 ELSE s.holders ->> i.n::text END AS message_id
FROM incoming i, done d, settled s, (SELECT count(*) FROM woken) AS w
ORDER BY i.n;

-- name: job_insert_unique_many --
-- Jobs with a unique key, one lamplighter.job_insert_unique() call each, in order. Returns
-- the id of the job that holds the key afterwards (the new one, or the existing holder).
SELECT lamplighter.job_insert_unique(
    (j ->> 'message_id')::uuid, j ->> 'queue_name', j ->> 'actor_name', j -> 'message',
    (j ->> 'priority')::integer, (j ->> 'delay_ms')::bigint, (j ->> 'max_attempts')::integer,
    j ->> 'unique_key',
    ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(j -> 'unique_states') = 'array'
                                                THEN j -> 'unique_states' ELSE '[]' END)),
    coalesce(j ->> 'unique_on_conflict', 'ignore'), j ->> 'concurrency_key',
    (j ->> 'concurrency_limit')::integer, j ->> 'tenant_id', j ->> 'correlation_id',
    j ->> 'enqueued_by', (j ->> 'parent_id')::uuid) AS message_id
FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS e(j, n)
ORDER BY n;

-- name: job_announce --
-- A consumer that answered wake-up tickets tells the consumers standing in for them
-- (storage/wakeups.py), once the jobs its claim found are handed out. No write: no WAL flush.
SELECT pg_notify(%(channel)s, p) FROM unnest(%(payloads)s::text[]) AS p;

-- name: job_claim_batch --
-- Claim up to %(limit)s available jobs of one queue for this worker, by priority then time, and
-- mark them with this claim's token (every later statement about them names it).
-- SKIP LOCKED: concurrent claimers never wait on each other and never take the same row.
-- No advisory locks: the claim is the row's state, owner and token, and the worker's heartbeat.
-- Jobs without a concurrency key come from queue_claim_unkeyed_idx; jobs with one are read per
-- key, only for keys with a free slot (queue_claim_keyed_idx), so a saturated key's backlog
-- costs nothing. Free slot rows are locked with SKIP LOCKED and paired with the batch's keyed
-- jobs; a keyed job without a slot stays queued. "holder IS NULL" is re-checked on the locked
-- slot row itself, which makes the limit exact under READ COMMITTED.
-- The message comes back as text (the worker measures it before decoding), with the job's age
-- by the database clock (an unknown actor's grace is measured by it).
WITH gate AS (
    -- The queue is not paused, and this worker is alive: a worker declared dead (its row gone)
    -- claims nothing until it has fenced itself and registered under a new id.
    SELECT NOT EXISTS (SELECT 1 FROM lamplighter.queues p WHERE p.name = %(queue)s AND p.paused)
           AND EXISTS (SELECT 1 FROM lamplighter.workers w WHERE w.id = %(worker_id)s) AS yes
), unkeyed AS (
    SELECT q.message_id, q.concurrency_key, q.concurrency_limit, q.priority, q.available_at
    FROM dramatiq.queue q
    WHERE q.state = 'queued' AND q.concurrency_key IS NULL
      AND q.queue_name = %(queue)s
      AND q.available_at <= lamplighter.now()
      AND (SELECT yes FROM gate)
    ORDER BY q.priority, q.available_at
    LIMIT %(limit)s
    FOR UPDATE OF q SKIP LOCKED
), open_keys AS (
    SELECT s.key, count(*) AS free
    FROM lamplighter.concurrency_slots s
    WHERE s.holder IS NULL AND (SELECT yes FROM gate)
    GROUP BY s.key
), keyed_candidates AS (
    SELECT j.*
    FROM open_keys k
    CROSS JOIN LATERAL (
        SELECT q.message_id, q.concurrency_key, q.concurrency_limit, q.priority, q.available_at
        FROM dramatiq.queue q
        WHERE q.state = 'queued' AND q.concurrency_key = k.key
          AND q.queue_name = %(queue)s
          AND q.available_at <= lamplighter.now()
        ORDER BY q.priority, q.available_at
        LIMIT least(k.free, %(limit)s)
        FOR UPDATE OF q SKIP LOCKED
    ) AS j
), next_jobs AS (
    SELECT * FROM (SELECT * FROM unkeyed UNION ALL SELECT * FROM keyed_candidates) AS c
    ORDER BY priority, available_at
    LIMIT %(limit)s
), keyed AS (
    SELECT message_id, concurrency_key,
           row_number() OVER (PARTITION BY concurrency_key ORDER BY priority, available_at) AS n
    FROM next_jobs
    WHERE concurrency_key IS NOT NULL
), free_slots AS (
    SELECT key, slot, row_number() OVER (PARTITION BY key ORDER BY slot) AS n
    FROM (SELECT s.key, s.slot
          FROM lamplighter.concurrency_slots s
          WHERE s.key IN (SELECT concurrency_key FROM keyed)
            AND s.holder IS NULL
            AND s.slot <= (SELECT max(coalesce(j.concurrency_limit, 1)) FROM next_jobs j
                           WHERE j.concurrency_key = s.key)
          FOR UPDATE OF s SKIP LOCKED) AS lockable
), granted AS (
    UPDATE lamplighter.concurrency_slots s
    SET holder = k.message_id, generation = s.generation + 1, taken_at = lamplighter.now()
    FROM keyed k JOIN free_slots f ON f.key = k.concurrency_key AND f.n = k.n
    WHERE s.key = f.key AND s.slot = f.slot
    RETURNING s.holder
), chosen AS (
    SELECT message_id FROM next_jobs WHERE concurrency_key IS NULL
    UNION ALL
    SELECT holder FROM granted
)
UPDATE dramatiq.queue AS q
SET state = 'running', worker_id = %(worker_id)s, claim_token = %(token)s, claimed_at = lamplighter.now(),
    started_at = NULL, mtime = lamplighter.now()
FROM chosen
WHERE q.message_id = chosen.message_id
-- (The id as text and the age as float8: the consumer keeps ids as strings; psycopg2's uuid.UUID
-- for each, turned back into a string, and a Decimal for the age cost 2.6 us a job.)
RETURNING q.message_id::text AS message_id, q.message::text AS message, q.attempt, q.actor_name, q.tenant_id,
          extract(epoch FROM lamplighter.now() - q.enqueued_at)::float8 AS age_seconds,
          q.unconfirmed_rescues > 0 AS confirm_start;

-- name: job_claim_woken --
-- The claim of an idle consumer woken for a job just enqueued: one job, by the same index,
-- order and SKIP LOCKED as job_claim_batch's jobs without a key, without its concurrency-slot
-- pairing (a quarter of a millisecond even with no keyed job in sight, on the path every job of
-- a quiet queue waits on). Jobs with a concurrency key are left to the full claim, which the
-- consumer runs right after this one: at once if this one found nothing.
UPDATE dramatiq.queue AS q
SET state = 'running', worker_id = %(worker_id)s, claim_token = %(token)s, claimed_at = lamplighter.now(),
    started_at = NULL, mtime = lamplighter.now()
FROM (SELECT j.message_id
      FROM dramatiq.queue j
      WHERE j.state = 'queued' AND j.concurrency_key IS NULL
        AND j.queue_name = %(queue)s
        AND j.available_at <= lamplighter.now()
        AND NOT EXISTS (SELECT 1 FROM lamplighter.queues p WHERE p.name = %(queue)s AND p.paused)
        AND EXISTS (SELECT 1 FROM lamplighter.workers w WHERE w.id = %(worker_id)s)
      ORDER BY j.priority, j.available_at
      LIMIT 1
      FOR UPDATE SKIP LOCKED) AS chosen
WHERE q.message_id = chosen.message_id
-- (The id as text and the age as float8, as job_claim_batch returns them.)
RETURNING q.message_id::text AS message_id, q.message::text AS message, q.attempt, q.actor_name, q.tenant_id,
          extract(epoch FROM lamplighter.now() - q.enqueued_at)::float8 AS age_seconds,
          q.unconfirmed_rescues > 0 AS confirm_start;

-- name: job_mark_started --
-- An attempt counts when the actor starts, not when the job is claimed: a prefetched job
-- handed back on shutdown or rescued after a crash keeps its attempts.
UPDATE dramatiq.queue AS q
SET attempt = q.attempt + 1, started_at = to_timestamp(s.started_at), mtime = lamplighter.now()
FROM jsonb_to_recordset(%(starts)s::jsonb) AS s(message_id uuid, token bigint, attempt integer,
                                                started_at double precision)
WHERE q.message_id = s.message_id AND q.claim_token = s.token AND q.attempt = s.attempt
  AND q.state = 'running';

-- name: job_finish_many --
-- Finish attempts: state change, history row, the freeing of concurrency slots, a dramatiq
-- result and a group member's count-down in one statement. Each finish names (job, claim
-- token, attempt): a late finish (after a rescue, by a worker declared dead) matches no row
-- and writes nothing, so it can never overwrite the next claim's attempt, even one made by the
-- same worker.
-- Re-running the same statement after a COMMIT whose outcome was unknown is harmless for the
-- same reason. state is queued (retry at delay_ms), completed, dead or cancelled; started_at
-- and finished_at are epoch seconds (the worker's clock).
-- It answers one row, the number of attempts recorded, and only after the last row is written:
-- the server sends nothing before its COMMIT, so a worker killed while the statement runs
-- cannot make it fail half-way (PostgreSQL runs a received statement to its end).
WITH f AS (
    SELECT *
    FROM jsonb_to_recordset(%(finishes)s::jsonb) AS f(
        message_id uuid, token bigint, attempt integer, state text, delay_ms bigint, outcome text,
        started_at double precision, finished_at double precision, duration_ms double precision,
        args_digest text, error_type text, error_message text, traceback text,
        result_summary jsonb, result_key text, result jsonb, result_ttl_ms bigint, group_id text,
        group_callbacks jsonb)
), finished AS (
    UPDATE dramatiq.queue AS q
    SET state = f.state,
        mtime = lamplighter.now(),
        -- The attempt's start may be folded into its finish (both in one flush): the row
        -- then still shows the previous attempt number.
        attempt = f.attempt,
        available_at = CASE WHEN f.state = 'queued'
                            THEN lamplighter.now() + coalesce(f.delay_ms, 0) * interval '1 millisecond'
                            ELSE q.available_at END,
        finished_at = CASE WHEN f.state = 'queued' THEN NULL ELSE lamplighter.now() END,
        worker_id = NULL, claimed_at = NULL, started_at = NULL, claim_token = NULL,
        last_error = CASE WHEN f.error_type IS NULL THEN q.last_error
                          ELSE f.error_type || ': ' || coalesce(f.error_message, '') END
    FROM f
    WHERE q.message_id = f.message_id AND q.claim_token = f.token AND q.attempt IN (f.attempt - 1, f.attempt)
      AND q.state = 'running'
      -- Redundant with the claim token, and there for the plan: the rows are found among this
      -- process's running rows (queue_running_idx), not among every worker's. Hash-joining
      -- every running row of the deployment cost 88 us a job instead of 57 with 2,000 of them.
      -- Every identity the process claimed under (a new one after a fence, broker.fence).
      AND q.worker_id = ANY(%(worker_ids)s::uuid[])
    RETURNING q.message_id, q.actor_name, q.queue_name, q.tenant_id, q.concurrency_key
), freed AS (
    UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
    FROM finished
    WHERE finished.concurrency_key IS NOT NULL AND s.key = finished.concurrency_key
      AND s.holder = finished.message_id
), recorded AS (
    INSERT INTO lamplighter.job_history (
        job_id, attempt, actor_name, queue_name, tenant_id, args_digest, worker_id, started_at,
        finished_at, duration_ms, outcome, error_type, error_message, traceback, result_summary)
    SELECT f.message_id, f.attempt, finished.actor_name, finished.queue_name, finished.tenant_id,
           f.args_digest, %(worker_id)s, to_timestamp(f.started_at), to_timestamp(f.finished_at), f.duration_ms,
           f.outcome, f.error_type, f.error_message, f.traceback, f.result_summary
    FROM finished JOIN f USING (message_id)
    ON CONFLICT (job_id, attempt) DO NOTHING
    RETURNING job_id, actor_name, outcome, duration_ms
), counted AS (
    -- /metrics' outcome counters and run-time histogram (migration 0012): one upsert per actor,
    -- outcome and run-time bucket of the batch, of the attempts recorded just above (a replayed
    -- finish records nothing, so it counts nothing), on one of 16 shard rows picked at random:
    -- two finishers seldom wait on one row. Sorted, so that they take row locks in one order.
    INSERT INTO lamplighter.job_counters AS c (actor_name, outcome, bucket, shard, attempts, run_seconds)
    SELECT actor_name, outcome, bucket, floor(random() * 16)::smallint, count(*), sum(seconds)
    FROM (SELECT actor_name, outcome, coalesce(duration_ms, 0) / 1000 AS seconds,
                 width_bucket(coalesce(duration_ms, 0) / 1000, lamplighter.run_time_bounds_v1()) AS bucket
          FROM recorded) AS r
    GROUP BY actor_name, outcome, bucket
    ORDER BY actor_name, outcome, bucket
    ON CONFLICT (actor_name, outcome, bucket, shard) DO UPDATE
    SET attempts = c.attempts + EXCLUDED.attempts, run_seconds = c.run_seconds + EXCLUDED.run_seconds
), kept AS (
    -- dramatiq results (actors with store_results=True; storage/engine/results.py): only the
    -- finishes that carry one reach this insert. Its trigger announces each on LISTEN.
    INSERT INTO lamplighter.job_results (message_key, job_id, result, expires_at)
    -- (jsonb_to_recordset reads a JSON null as SQL NULL: an actor that returned None.)
    SELECT f.result_key, f.message_id, coalesce(f.result, 'null'::jsonb),
           lamplighter.now() + f.result_ttl_ms * interval '1 millisecond'
    FROM finished JOIN f USING (message_id)
    WHERE f.result_key IS NOT NULL
    ON CONFLICT (message_key) DO UPDATE SET job_id = EXCLUDED.job_id, result = EXCLUDED.result,
                                            expires_at = EXCLUDED.expires_at
), grouped AS (
    -- Completed members of a dramatiq group with completion callbacks: the trigger on
    -- lamplighter.group_members counts the group down and enqueues its callbacks after the last.
    INSERT INTO lamplighter.group_members (group_id, job_id, callbacks)
    SELECT f.group_id, f.message_id, f.group_callbacks
    FROM finished JOIN f USING (message_id)
    WHERE f.group_id IS NOT NULL AND f.state = 'completed'
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS recorded FROM recorded;

-- name: job_reject_undecodable --
-- A row that never ran because its message cannot be run (not decodable, unknown actor after
-- the grace, bad arguments, too large, too old): dead at once with the reason. No attempt is
-- consumed and no history row written, since nothing ran; the job row keeps the reason.
WITH rejected AS (
    UPDATE dramatiq.queue
    SET state = 'dead', last_error = %(reason)s, worker_id = NULL, claimed_at = NULL, claim_token = NULL,
        finished_at = lamplighter.now(), mtime = lamplighter.now()
    WHERE message_id = %(message_id)s AND claim_token = %(token)s AND state = 'running'
    RETURNING message_id, concurrency_key
)
UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
FROM rejected
WHERE rejected.concurrency_key IS NOT NULL AND s.key = rejected.concurrency_key
  AND s.holder = rejected.message_id;

-- name: job_defer_unknown_actor --
-- A job for an actor this worker does not know, inside the grace: back to the queue for a
-- worker of a newer release, without consuming an attempt. Also a job over its rate limit
-- (storage/rate_limits.py), until its reserved time, with no reason (last_error is kept).
WITH deferred AS (
    UPDATE dramatiq.queue
    SET state = 'queued', worker_id = NULL, claimed_at = NULL, started_at = NULL, claim_token = NULL,
        available_at = lamplighter.now() + make_interval(secs => %(delay_seconds)s),
        last_error = coalesce(%(reason)s, last_error), mtime = lamplighter.now()
    WHERE message_id = %(message_id)s AND claim_token = %(token)s AND state = 'running'
    RETURNING message_id, concurrency_key
)
UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
FROM deferred
WHERE deferred.concurrency_key IS NOT NULL AND s.key = deferred.concurrency_key
  AND s.holder = deferred.message_id;

-- name: job_release_unstarted --
-- Hand claimed jobs back unstarted (shutdown, consumer restart, a job that waited in this
-- worker while another had a free thread): they keep their attempt. Found among this process's
-- running rows (%(worker_ids)s, as job_finish_many does), not among every worker's.
WITH released AS (
    UPDATE dramatiq.queue AS q
    SET state = 'queued', worker_id = NULL, claimed_at = NULL, started_at = NULL, claim_token = NULL,
        mtime = lamplighter.now()
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS r(message_id uuid, token bigint)
    WHERE q.message_id = r.message_id AND q.claim_token = r.token AND q.state = 'running'
      AND q.worker_id = ANY(%(worker_ids)s::uuid[])
    RETURNING q.message_id, q.queue_name, q.concurrency_key
), freed AS (
    UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
    FROM released
    WHERE released.concurrency_key IS NOT NULL AND s.key = released.concurrency_key
      AND s.holder = released.message_id
), woken AS (
    SELECT lamplighter.wake(queue_name, count(*)) FROM released GROUP BY queue_name
)
SELECT count(*) FROM released, (SELECT count(*) FROM woken) AS w;

-- name: job_release_lost_claim --
-- A claim whose COMMIT outcome is unknown (the connection died while it ran) may have committed
-- with its answer lost: rows this worker holds but never received. In the queue's next claim,
-- the rows of that claim's token go back, attempt kept. Found among this process's running rows
-- (%(worker_ids)s: the claim token has no index of its own).
WITH released AS (
    UPDATE dramatiq.queue
    SET state = 'queued', worker_id = NULL, claimed_at = NULL, started_at = NULL, claim_token = NULL,
        mtime = lamplighter.now()
    WHERE claim_token = ANY(%(tokens)s::bigint[]) AND state = 'running'
      AND worker_id = ANY(%(worker_ids)s::uuid[])
    RETURNING message_id, concurrency_key
), freed AS (
    UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
    FROM released
    WHERE released.concurrency_key IS NOT NULL AND s.key = released.concurrency_key
      AND s.holder = released.message_id
)
SELECT message_id FROM released;

-- name: job_hand_back_started --
-- Graceful shutdown: attempts still running when the grace ran out go back to the queue and
-- the attempt is given back (it did not fail; the worker stopped). Recorded as an event. Found
-- among this process's running rows (%(worker_ids)s), as job_finish_many does.
WITH b AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb) AS b(message_id uuid, token bigint, attempt integer,
                                                           reason text)
), handed AS (
    UPDATE dramatiq.queue AS q
    SET state = 'queued', attempt = q.attempt - 1, worker_id = NULL, claimed_at = NULL, claim_token = NULL,
        started_at = NULL, available_at = lamplighter.now(), mtime = lamplighter.now()
    FROM b
    WHERE q.message_id = b.message_id AND q.claim_token = b.token AND q.attempt = b.attempt
      AND q.state = 'running' AND q.worker_id = ANY(%(worker_ids)s::uuid[])
    RETURNING q.message_id, q.concurrency_key
), freed AS (
    UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
    FROM handed
    WHERE handed.concurrency_key IS NOT NULL AND s.key = handed.concurrency_key
      AND s.holder = handed.message_id
)
INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
SELECT b.message_id, 'handed_back', 'worker:' || %(worker_id)s,
       jsonb_build_object('attempt', b.attempt, 'reason', b.reason)
FROM handed JOIN b USING (message_id);

-- name: slot_free_stray --
-- Safety net run on every worker heartbeat: free slots whose holder is no longer running
-- (a job rescued from a dead worker, deleted by hand, ...). A slot is freed only if the
-- generation read is still current, so a slot taken by a newer claim is never touched.
WITH stray AS (
    SELECT s.key, s.slot, s.generation
    FROM lamplighter.concurrency_slots s
    WHERE s.holder IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM dramatiq.queue q WHERE q.message_id = s.holder AND q.state = 'running')
)
UPDATE lamplighter.concurrency_slots s SET holder = NULL, taken_at = NULL
FROM stray
WHERE s.key = stray.key AND s.slot = stray.slot AND s.generation = stray.generation
  AND s.holder IS NOT NULL;

-- name: job_get --
SELECT message_id, queue_name, actor_name, state, message, priority, available_at, enqueued_at,
       attempt, max_attempts, worker_id, claimed_at, started_at, finished_at, unique_key,
       unique_states, concurrency_key, concurrency_limit, tenant_id, correlation_id,
       enqueued_by, last_error, cancel_requested, mtime
FROM dramatiq.queue
WHERE message_id = %(message_id)s;

-- name: job_page --
-- One page of `GET /api/jobs`, newest first by each job's time (finished_at for finished jobs,
-- enqueued_at for waiting and running ones), after the keyset cursor (listed_at, message_id) of
-- the previous page's last row. One branch per state, each stopping at the page's size, merged.
-- Finished jobs, which are what piles up (millions, with their history), page through
-- queue_finished_idx: a page costs the same on the last page of ten million as on the first.
-- Waiting jobs page through queue_waiting_page_idx (0025), written at enqueue only: a backlog
-- of a million costs a page what an empty queue does (without it the branch sorted every
-- waiting job: 1-2 s). Its two branches (without and with a concurrency key) keep their claim
-- index predicates for filtered pages. Running jobs (at most the workers' threads) are sorted,
-- found through queue_running_idx.
-- With an error text, job_page_by_error answers instead.
SELECT *
FROM ((
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime, q.finished_at AS listed_at
    FROM dramatiq.queue q
    WHERE q.state = 'completed' AND 'completed' = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(since)s::timestamptz IS NULL OR q.finished_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR q.finished_at < %(until)s)
      AND (%(after_at)s::timestamptz IS NULL OR (q.finished_at, q.message_id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY q.finished_at DESC, q.message_id DESC
    LIMIT %(limit)s
)
UNION ALL
(
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime, q.finished_at AS listed_at
    FROM dramatiq.queue q
    WHERE q.state = 'dead' AND 'dead' = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(since)s::timestamptz IS NULL OR q.finished_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR q.finished_at < %(until)s)
      AND (%(after_at)s::timestamptz IS NULL OR (q.finished_at, q.message_id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY q.finished_at DESC, q.message_id DESC
    LIMIT %(limit)s
)
UNION ALL
(
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime, q.finished_at AS listed_at
    FROM dramatiq.queue q
    WHERE q.state = 'cancelled' AND 'cancelled' = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(since)s::timestamptz IS NULL OR q.finished_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR q.finished_at < %(until)s)
      AND (%(after_at)s::timestamptz IS NULL OR (q.finished_at, q.message_id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY q.finished_at DESC, q.message_id DESC
    LIMIT %(limit)s
)
UNION ALL
(
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime, q.enqueued_at AS listed_at
    FROM dramatiq.queue q
    WHERE q.state = 'queued' AND q.concurrency_key IS NULL AND 'queued' = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(since)s::timestamptz IS NULL OR q.enqueued_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR q.enqueued_at < %(until)s)
      AND (%(after_at)s::timestamptz IS NULL OR (q.enqueued_at, q.message_id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY q.enqueued_at DESC, q.message_id DESC
    LIMIT %(limit)s
)
UNION ALL
(
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime, q.enqueued_at AS listed_at
    FROM dramatiq.queue q
    WHERE q.state = 'queued' AND q.concurrency_key IS NOT NULL AND 'queued' = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(since)s::timestamptz IS NULL OR q.enqueued_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR q.enqueued_at < %(until)s)
      AND (%(after_at)s::timestamptz IS NULL OR (q.enqueued_at, q.message_id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY q.enqueued_at DESC, q.message_id DESC
    LIMIT %(limit)s
)
UNION ALL
(
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime, q.enqueued_at AS listed_at
    FROM dramatiq.queue q
    WHERE q.state = 'running' AND 'running' = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(since)s::timestamptz IS NULL OR q.enqueued_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR q.enqueued_at < %(until)s)
      AND (%(after_at)s::timestamptz IS NULL OR (q.enqueued_at, q.message_id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY q.enqueued_at DESC, q.message_id DESC
    LIMIT %(limit)s
)) AS j
ORDER BY j.listed_at DESC, j.message_id DESC
LIMIT %(limit)s;

-- name: job_ids_with_error --
-- Of these jobs (a page's newest candidates), the ones with an attempt whose error message
-- matches (ILIKE): one look-up per job in job_history_job_id_attempt_key.
SELECT DISTINCT h.job_id
FROM lamplighter.job_history h
WHERE h.job_id = ANY (%(ids)s::uuid[]) AND h.error_message ILIKE %(error)s;

-- name: job_page_by_error --
-- job_page with an error text: the jobs one of whose attempts' error message contains it, found
-- through the history's trigram index (job_history_error_trgm_idx) and then sorted, same order
-- and cursor as job_page.
WITH matching AS MATERIALIZED (
    SELECT DISTINCT h.job_id
    FROM lamplighter.job_history h
    WHERE h.error_message ILIKE %(error)s
), listed AS (
    SELECT q.message_id, q.queue_name, q.actor_name, q.state, q.message, q.priority, q.available_at,
           q.enqueued_at, q.attempt, q.max_attempts, q.worker_id, q.claimed_at, q.started_at, q.finished_at,
           q.unique_key, q.unique_states, q.concurrency_key, q.concurrency_limit, q.tenant_id, q.correlation_id,
           q.enqueued_by, q.last_error, q.cancel_requested, q.mtime,
           CASE WHEN q.state IN ('queued', 'running') THEN q.enqueued_at ELSE q.finished_at END AS listed_at
    FROM matching m
    JOIN dramatiq.queue q ON q.message_id = m.job_id
    WHERE q.state = ANY(%(states)s::text[])
      AND (%(every_tenant)s OR q.tenant_id = %(tenant_id)s)
      AND (%(tenant)s::text IS NULL OR q.tenant_id = %(tenant)s)
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
)
SELECT *
FROM listed
WHERE (%(since)s::timestamptz IS NULL OR listed_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR listed_at < %(until)s)
  AND (%(after_at)s::timestamptz IS NULL OR (listed_at, message_id) < (%(after_at)s, %(after_id)s::uuid))
ORDER BY listed_at DESC, message_id DESC
LIMIT %(limit)s;

-- name: job_discard --
-- Operator discard of a waiting, scheduled or retry-pending job: dead at once, never run again
-- (cancel, by contrast, ends it cancelled, and asks a running one to stop). An event records who.
WITH discarded AS (
    UPDATE dramatiq.queue
    SET state = 'dead', finished_at = lamplighter.now(), mtime = lamplighter.now(),
        last_error = 'Discarded: by ' || %(by)s
    WHERE message_id = %(message_id)s AND state = 'queued'
    RETURNING message_id
), recorded AS (
    INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
    SELECT message_id, 'discarded', %(by)s, %(detail)s::jsonb FROM discarded
)
SELECT message_id FROM discarded;

-- name: job_events_for_job --
-- A job's events are its rows of the audit log (lamplighter.job_events is the same as a view).
-- Read from the log itself: the view's job_id is a cast of target_id, which the index on
-- (target_type, target_id) cannot serve.
SELECT at, substr(action, 5) AS event, actor AS requested_by, details AS detail
FROM lamplighter.audit_log
WHERE target_type = 'job' AND target_id = %(job_id)s::uuid::text
ORDER BY at, id;

-- name: job_requeue --
-- Operator redrive of a dead, cancelled or completed job: queued now, with room for as many
-- attempts as it originally had. History keeps counting attempts from where they were. The
-- redrive is an event, with edited arguments noted. A job whose unique key another job holds
-- meanwhile violates queue_unique_key_idx: the caller reports the conflict.
WITH requeued AS (
    UPDATE dramatiq.queue
    SET state = 'queued', available_at = lamplighter.now(), mtime = lamplighter.now(),
        worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
        cancel_requested = false,
        max_attempts = CASE WHEN max_attempts IS NULL THEN NULL ELSE attempt + max_attempts END,
        message = CASE WHEN %(message)s::jsonb IS NULL THEN message ELSE %(message)s::jsonb END
    WHERE message_id = %(message_id)s AND state IN ('dead', 'cancelled', 'completed')
    RETURNING message_id, queue_name, state
), recorded AS (
    INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
    SELECT message_id, 'redriven', %(by)s, %(detail)s::jsonb FROM requeued
), woken AS (
    SELECT lamplighter.wake(queue_name, 1) FROM requeued
)
SELECT message_id FROM requeued, (SELECT count(*) FROM woken) AS w;

-- name: job_requeue_matching --
-- Bulk redrive of dead jobs by actor / queue / error type (the part of last_error before the
-- first ':'), up to %(limit)s, oldest death first. Jobs whose unique key is held by another
-- job are left dead, and of several dead jobs sharing a key only one is redriven.
WITH candidates AS (
    SELECT q.message_id, q.unique_key, q.finished_at
    FROM dramatiq.queue q
    WHERE q.state = 'dead'
      AND (%(actor)s::text IS NULL OR q.actor_name = %(actor)s)
      AND (%(queue)s::text IS NULL OR q.queue_name = %(queue)s)
      AND (%(error_type)s::text IS NULL OR split_part(q.last_error, ':', 1) = %(error_type)s)
      AND (q.unique_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM dramatiq.queue h
              WHERE h.unique_key = q.unique_key AND h.state = ANY (h.unique_states)
                AND h.message_id <> q.message_id))
    ORDER BY q.finished_at
    LIMIT %(limit)s
    FOR UPDATE OF q SKIP LOCKED
), one_per_key AS (
    SELECT DISTINCT ON (coalesce(unique_key, message_id::text)) message_id
    FROM candidates
    ORDER BY coalesce(unique_key, message_id::text), finished_at DESC
), requeued AS (
    UPDATE dramatiq.queue AS q
    SET state = 'queued', available_at = lamplighter.now(), mtime = lamplighter.now(),
        worker_id = NULL, claimed_at = NULL, started_at = NULL, finished_at = NULL,
        cancel_requested = false,
        max_attempts = CASE WHEN q.max_attempts IS NULL THEN NULL ELSE q.attempt + q.max_attempts END
    FROM one_per_key
    WHERE q.message_id = one_per_key.message_id
    RETURNING q.message_id, q.queue_name
), recorded AS (
    INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
    SELECT message_id, 'redriven', %(by)s, %(detail)s::jsonb FROM requeued
), woken AS (
    SELECT lamplighter.wake(queue_name, count(*)) FROM requeued GROUP BY queue_name
)
SELECT message_id FROM requeued, (SELECT count(*) FROM woken) AS w;

-- name: job_cancel_waiting --
-- A waiting or scheduled job is cancelled at once.
WITH cancelled AS (
    UPDATE dramatiq.queue
    SET state = 'cancelled', finished_at = lamplighter.now(), mtime = lamplighter.now(),
        last_error = 'Cancelled: by ' || %(by)s
    WHERE message_id = %(message_id)s AND state = 'queued'
    RETURNING message_id
), recorded AS (
    INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
    SELECT message_id, 'cancelled', %(by)s, %(detail)s::jsonb FROM cancelled
)
SELECT message_id FROM cancelled;

-- name: job_cancel_running --
-- A running job gets a cooperative flag the actor can check (jobs.cancel_requested); an
-- actor that stops raises domain.outcomes.Cancel and the attempt ends as cancelled.
WITH flagged AS (
    UPDATE dramatiq.queue
    SET cancel_requested = true, mtime = lamplighter.now()
    WHERE message_id = %(message_id)s AND state = 'running'
    RETURNING message_id
), recorded AS (
    INSERT INTO lamplighter.job_events (job_id, event, requested_by, detail)
    SELECT message_id, 'cancel_requested', %(by)s, %(detail)s::jsonb FROM flagged
)
SELECT message_id FROM flagged;

-- name: job_cancel_requested --
-- Polled by a running actor (not per job by the broker): has an operator asked it to stop?
SELECT cancel_requested FROM dramatiq.queue WHERE message_id = %(message_id)s;

-- name: job_prune_finished --
-- One bounded batch of pruning: jobs in %(states)s finished before the retention, with their
-- history. Their events (lamplighter.job_events) are audit rows: they stay until their month is
-- archived. Safe to re-run; SKIP LOCKED keeps it off rows anything else touches.
WITH doomed AS (
    SELECT message_id
    FROM dramatiq.queue
    WHERE state = ANY(%(states)s::text[])
      AND finished_at < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
    ORDER BY finished_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM dramatiq.queue q USING doomed WHERE q.message_id = doomed.message_id
    RETURNING q.message_id
), history AS (
    DELETE FROM lamplighter.job_history h USING gone WHERE h.job_id = gone.message_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM history) AS history_rows;
