-- Idempotency-Key records of the HTTP API (lamplighter.idempotency_keys, migration 0013): the
-- first request's answer, returned to its retries for 24 hours.

-- name: idempotency_claim --
-- Take the key for this request, in the caller's transaction (the enqueue joins it). A second
-- request with the key waits here until the first commits or rolls back, then finds its row. A
-- row past its lifetime is taken over as if absent. Answers a row only when this request took it.
INSERT INTO lamplighter.idempotency_keys AS k (principal, key, request_hash)
VALUES (%(principal)s, %(key)s, %(request_hash)s)
ON CONFLICT (principal, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, status = NULL, response = NULL, created_at = lamplighter.now()
    WHERE k.created_at < lamplighter.now() - make_interval(secs => %(ttl_seconds)s)
RETURNING k.key;

-- name: idempotency_get --
-- The answer kept for a key (status NULL: its first request has not committed one).
SELECT request_hash, status, response
FROM lamplighter.idempotency_keys
WHERE principal = %(principal)s AND key = %(key)s
  AND created_at >= lamplighter.now() - make_interval(secs => %(ttl_seconds)s);

-- name: idempotency_record --
-- The first request's answer, written in its transaction.
UPDATE lamplighter.idempotency_keys
SET status = %(status)s, response = %(response)s::jsonb
WHERE principal = %(principal)s AND key = %(key)s;

-- name: idempotency_prune --
-- One batch of keys past their lifetime (api.prune_idempotency_keys, hourly).
WITH doomed AS (
    SELECT principal, key
    FROM lamplighter.idempotency_keys
    WHERE created_at < lamplighter.now() - make_interval(secs => %(ttl_seconds)s)
    ORDER BY created_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lamplighter.idempotency_keys k USING doomed
WHERE k.principal = doomed.principal AND k.key = doomed.key;
