-- Cache: key/value with expiry, compared with lamplighter.now().

-- name: cache_get --
SELECT value FROM lamplighter.cache
WHERE key = %(key)s AND (expires_at IS NULL OR expires_at > lamplighter.now());

-- name: cache_put --
INSERT INTO lamplighter.cache (key, value, expires_at, updated_at)
VALUES (%(key)s, %(value)s::jsonb,
        lamplighter.now() + make_interval(secs => %(ttl)s::double precision), lamplighter.now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at,
    updated_at = EXCLUDED.updated_at;

-- name: cache_delete --
DELETE FROM lamplighter.cache WHERE key = %(key)s;

-- name: cache_prune_expired --
DELETE FROM lamplighter.cache
WHERE key IN (SELECT key FROM lamplighter.cache WHERE expires_at <= lamplighter.now()
              LIMIT %(batch_size)s FOR UPDATE SKIP LOCKED);
