-- notifications.expiring_credentials (domain/credentials.py): the credentials view (migration
-- 0009), every tenant's.

-- name: credentials_expiring --
-- Credentials that expire within a horizon and have not expired yet, soonest first.
SELECT kind, credential_id, name, owner, tenant_id, expires_at
FROM lamplighter.credentials
WHERE expires_at > lamplighter.now() AND expires_at <= lamplighter.now() + make_interval(days => %(days)s)
ORDER BY expires_at, kind, credential_id
LIMIT %(limit)s;

-- name: credentials_now --
-- The database's clock, the one the view's expiry is compared with.
SELECT lamplighter.now();
