-- Dashboard sessions (lamplighter.sessions). The cookie holds the session id; this table holds
-- its SHA-256 only. A session is its user's: its tenant is the user's.

-- name: session_insert --
INSERT INTO lamplighter.sessions (session_hash, user_id, source_address, expires_at)
VALUES (%(session_hash)s, %(user_id)s, %(source_address)s,
        lamplighter.now() + make_interval(secs => %(ttl_seconds)s::double precision))
RETURNING id, user_id, expires_at;

-- name: session_resolve --
-- The session's user, if the session has not expired; its last-seen time is written at most
-- once a minute. The user's tenant comes with its billing status and the database's now.
WITH found AS (
    SELECT s.id, s.user_id, s.expires_at, s.last_seen_at, lamplighter.now() AS now
    FROM lamplighter.sessions s
    WHERE s.session_hash = %(session_hash)s AND s.expires_at > lamplighter.now()
), seen AS (
    UPDATE lamplighter.sessions s SET last_seen_at = found.now
    FROM found
    WHERE s.id = found.id AND s.last_seen_at < found.now - interval '1 minute'
)
SELECT found.id AS session_id, found.expires_at, found.now,
       u.id, u.email, u.display_name, u.role, u.tenant_id, u.disabled_at, u.last_login_at, u.created_at,
       u.updated_at, tn.billing_status AS tenant_status, tn.grace_period_ends_at AS tenant_grace_period_ends_at
FROM found
JOIN lamplighter.users u ON u.id = found.user_id
LEFT JOIN lamplighter.tenants tn ON tn.id = u.tenant_id;

-- name: session_delete --
DELETE FROM lamplighter.sessions WHERE session_hash = %(session_hash)s;

-- name: session_prune_expired --
-- One batch of expired sessions.
WITH doomed AS (
    SELECT id FROM lamplighter.sessions
    WHERE expires_at <= lamplighter.now()
    ORDER BY expires_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lamplighter.sessions s USING doomed WHERE s.id = doomed.id;
