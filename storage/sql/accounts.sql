-- Managed-account creation requests (lamplighter.queued_managed_account_creations) and the
-- notifications of their creators. "now" comes from the caller's clock (domain/accounts.py),
-- so the retry schedule can be checked with a frozen clock.

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
    WHERE status = 'pending' AND next_retry_at <= %(now)s
    ORDER BY next_retry_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE lamplighter.queued_managed_account_creations r
SET status = 'processing', claimed_at = %(now)s, updated_at = %(now)s
FROM due
WHERE r.id = due.id
RETURNING r.*;

-- name: account_request_stuck --
-- Requests processing for longer than the processing timeout (a worker died mid-call).
SELECT * FROM lamplighter.queued_managed_account_creations
WHERE status = 'processing' AND claimed_at < %(cutoff)s
ORDER BY claimed_at
LIMIT %(limit)s;

-- name: account_request_finish --
-- Record an attempt's outcome, only if the request is still in the claim that made it (a late
-- finish of a claim the stuck-release already took back changes nothing).
UPDATE lamplighter.queued_managed_account_creations
SET status = %(status)s,
    retry_count = %(retry_count)s,
    next_retry_at = coalesce(%(next_retry_at)s, next_retry_at),
    last_error_message = %(last_error_message)s,
    idp_user_id = coalesce(%(idp_user_id)s, idp_user_id),
    encrypted_password = CASE WHEN %(erase_password)s THEN NULL ELSE encrypted_password END,
    updated_at = %(now)s
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
WHERE status = 'pending' AND next_retry_at <= %(now)s;

-- name: account_notification_insert --
INSERT INTO lamplighter.managed_account_notifications (recipient, request_id, kind, message, created_at)
VALUES (%(recipient)s, %(request_id)s, %(kind)s, %(message)s, %(now)s)
ON CONFLICT (request_id, kind) DO NOTHING;

-- name: account_notification_list --
SELECT id, recipient, request_id, kind, message, created_at, read_at
FROM lamplighter.managed_account_notifications
WHERE recipient = %(recipient)s AND (NOT %(unread_only)s OR read_at IS NULL)
ORDER BY created_at, id;
