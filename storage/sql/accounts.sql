-- Managed-account creation requests (lamplighter.queued_managed_account_creations) and what
-- their creators were told (written through the notification outbox). The sweep's times (due,
-- claimed, stuck, next try) come from lamplighter.now(), the database's clock, like every other
-- comparison with a stored time: a worker whose clock runs ahead would otherwise claim early
-- and take back requests another worker is still calling Zitadel for. Only
-- account_request_insert still takes the caller's "now" (domain.accounts.request_account is
-- given a clock).

-- name: account_request_insert --
INSERT INTO lamplighter.queued_managed_account_creations
    (organization_id, username, given_name, family_name, email, role, encrypted_password,
     created_by, next_retry_at, created_at, updated_at)
VALUES (%(organization_id)s, %(username)s, %(given_name)s, %(family_name)s, %(email)s, %(role)s,
        %(encrypted_password)s, %(created_by)s, %(now)s, %(now)s, %(now)s)
RETURNING id;

-- name: account_request_claim_next --
-- One due pending request, marked processing and committed before Zitadel is called: no row
-- lock is held during HTTP, and a request another sweep holds or has marked is skipped.
WITH due AS (
    SELECT id FROM lamplighter.queued_managed_account_creations
    WHERE status = 'pending' AND next_retry_at <= lamplighter.now()
    ORDER BY next_retry_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE lamplighter.queued_managed_account_creations r
SET status = 'processing', claimed_at = lamplighter.now(), updated_at = lamplighter.now()
FROM due
WHERE r.id = due.id
RETURNING r.*;

-- name: account_request_stuck --
-- Requests processing for longer than the processing timeout (a worker died mid-call).
SELECT * FROM lamplighter.queued_managed_account_creations
WHERE status = 'processing'
  AND claimed_at < lamplighter.now() - make_interval(secs => %(processing_timeout)s::double precision)
ORDER BY claimed_at
LIMIT %(limit)s;

-- name: account_request_finish --
-- Record an attempt's outcome, only if the request is still in the claim that made it (a late
-- finish of a claim the stuck-release already took back changes nothing). The next try is
-- retry_delay seconds after now (NULL: unchanged).
UPDATE lamplighter.queued_managed_account_creations
SET status = %(status)s,
    retry_count = %(retry_count)s,
    next_retry_at = coalesce(lamplighter.now() + make_interval(secs => %(retry_delay)s::double precision),
                             next_retry_at),
    last_error_message = %(last_error_message)s,
    idp_user_id = coalesce(%(idp_user_id)s, idp_user_id),
    encrypted_password = CASE WHEN %(erase_password)s THEN NULL ELSE encrypted_password END,
    updated_at = lamplighter.now()
WHERE id = %(id)s AND status = 'processing' AND claimed_at = %(claimed_at)s
RETURNING id;

-- name: account_request_get --
SELECT * FROM lamplighter.queued_managed_account_creations WHERE id = %(id)s;

-- name: account_request_list --
SELECT * FROM lamplighter.queued_managed_account_creations
WHERE (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: account_request_count_due --
SELECT count(*) FROM lamplighter.queued_managed_account_creations
WHERE status = 'pending' AND next_retry_at <= lamplighter.now();

-- name: account_notification_list --
-- What an admin was told, from the outbox (the view of migration 0010); read_at: delivered.
SELECT id, recipient, request_id, kind, message, created_at, read_at
FROM lamplighter.managed_account_notifications
WHERE recipient = %(recipient)s AND (NOT %(unread_only)s OR read_at IS NULL)
ORDER BY created_at, id;
