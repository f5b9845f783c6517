-- API tokens (lamplighter.api_tokens). Only a token's SHA-256 is stored; the token itself is
-- shown once, by domain/tokens.py, and never reaches this file. Listings and revocation take a
-- tenant scope (storage/tenants.py); authentication finds a token by its hash alone.

-- name: token_insert --
-- The expiry is an instant given, or a number of seconds from the database's now, or none.
INSERT INTO lamplighter.api_tokens (name, secret_hash, display_prefix, scopes, actors, queues, tenant_id, owner,
                                    created_by, expires_at)
VALUES (%(name)s, %(secret_hash)s, %(display_prefix)s, %(scopes)s, %(actors)s, %(queues)s, %(tenant_id)s,
        %(owner)s, %(created_by)s,
        coalesce(%(expires_at)s::timestamptz,
                 lamplighter.now() + make_interval(secs => %(expires_in_seconds)s::double precision)))
RETURNING id, name, display_prefix, scopes, actors, queues, tenant_id, owner, created_by, expires_at,
          revoked_at, revoked_by, last_used_at, created_at;

-- name: token_list --
SELECT id, name, display_prefix, scopes, actors, queues, tenant_id, owner, created_by, expires_at,
       revoked_at, revoked_by, last_used_at, created_at
FROM lamplighter.api_tokens
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY id;

-- name: token_revoke --
-- Revoked now; a token already revoked keeps its first revocation (and answers nothing new).
UPDATE lamplighter.api_tokens
SET revoked_at = lamplighter.now(), revoked_by = %(by)s
WHERE id = %(id)s AND revoked_at IS NULL
  AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING id, name, display_prefix, scopes, actors, queues, tenant_id, owner, created_by, expires_at,
          revoked_at, revoked_by, last_used_at, created_at;

-- name: token_get --
SELECT id, name, display_prefix, scopes, actors, queues, tenant_id, owner, created_by, expires_at,
       revoked_at, revoked_by, last_used_at, created_at
FROM lamplighter.api_tokens
WHERE id = %(id)s
  AND (%(every_tenant)s OR tenant_id = %(tenant_id)s);

-- name: token_authenticate --
-- The token whose hash this is, with its tenant's billing status and the database's now (to
-- tell expired, and a grace period that has ended). Its last use is written at most once a
-- minute, so a busy client does not rewrite the row on every request.
WITH found AS (
    SELECT t.*, lamplighter.now() AS now
    FROM lamplighter.api_tokens t
    WHERE t.secret_hash = %(secret_hash)s
), used AS (
    UPDATE lamplighter.api_tokens t
    SET last_used_at = found.now
    FROM found
    WHERE t.id = found.id AND found.revoked_at IS NULL AND (found.expires_at IS NULL OR found.expires_at > found.now)
      AND (t.last_used_at IS NULL OR t.last_used_at < found.now - interval '1 minute')
)
SELECT found.id, found.name, found.display_prefix, found.scopes, found.actors, found.queues, found.tenant_id,
       found.owner, found.created_by, found.expires_at, found.revoked_at, found.revoked_by, found.last_used_at,
       found.created_at, found.now, tn.billing_status AS tenant_status,
       tn.grace_period_ends_at AS tenant_grace_period_ends_at
FROM found
LEFT JOIN lamplighter.tenants tn ON tn.id = found.tenant_id;

-- name: token_prune_ended --
-- One batch of tokens expired or revoked longer ago than the retention (they are listed,
-- as ended, until then). The audit log keeps their creation and revocation.
WITH doomed AS (
    SELECT id
    FROM lamplighter.api_tokens
    WHERE (expires_at IS NOT NULL OR revoked_at IS NOT NULL)
      AND least(expires_at, revoked_at) < lamplighter.now() - make_interval(secs => %(retention_seconds)s::double precision)
    ORDER BY least(expires_at, revoked_at)
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lamplighter.api_tokens t USING doomed WHERE t.id = doomed.id;
