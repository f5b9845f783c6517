-- dramatiq results kept in lamplighter.job_results (storage/results.py). The worker's own writes
-- are part of job_finish_many (storage/sql/jobs.sql); these serve get_result and other writers.

-- name: job_result_get --
-- A result not yet expired, by dramatiq's message key.
SELECT result FROM lamplighter.job_results
WHERE message_key = %(message_key)s::text AND expires_at > lamplighter.now();

-- name: job_result_store --
-- dramatiq's ResultBackend._store: a result (or wrapped exception) for %(ttl)s ms; the table's
-- trigger announces it to blocking get_result calls.
INSERT INTO lamplighter.job_results (message_key, result, expires_at)
VALUES (%(message_key)s::text, %(result)s::jsonb, lamplighter.now() + %(ttl)s::bigint * interval '1 millisecond')
ON CONFLICT (message_key) DO UPDATE SET result = EXCLUDED.result, expires_at = EXCLUDED.expires_at;

-- name: job_result_prune --
-- One bounded batch of expired results.
WITH doomed AS (
    SELECT message_key FROM lamplighter.job_results
    WHERE expires_at <= lamplighter.now()
    ORDER BY expires_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lamplighter.job_results r USING doomed WHERE r.message_key = doomed.message_key;
