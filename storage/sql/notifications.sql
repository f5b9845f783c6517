-- The notification outbox (lamplighter.notifications; migration 0010). A row's delivery job is
-- notifications.deliver, queued through lamplighter.enqueue() (the engine's public SQL API) in
-- the statement that writes or re-arms the row, so in the caller's transaction: the row and its
-- job commit together or not at all. The job's unique key, notification:<id>, keeps at most one
-- delivery job waiting or running per row, whoever queues it (the writer, the sweep, a retry).

-- name: notification_insert --
-- Write a notification and queue its delivery; a dedupe key already written changes nothing,
-- queues nothing and returns no row.
WITH inserted AS (
    INSERT INTO lamplighter.notifications
        (dedupe_key, kind, channel, recipient_kind, recipient, webhook_format, subject, body_text, body_html,
         tenant_id)
    VALUES (%(dedupe_key)s, %(kind)s, %(channel)s, %(recipient_kind)s, %(recipient)s, %(webhook_format)s,
            %(subject)s, %(body_text)s, %(body_html)s, %(tenant_id)s)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
)
SELECT id, lamplighter.enqueue('notifications.deliver', jsonb_build_object('notification_id', id),
                               unique_key => 'notification:' || id) AS job_id
FROM inserted;

-- name: notification_set_job --
-- The delivery job now responsible for the row (shown by `lamplighter notifications`).
UPDATE lamplighter.notifications SET job_id = %(job_id)s WHERE id = %(id)s;

-- name: notification_get --
SELECT * FROM lamplighter.notifications WHERE id = %(id)s;

-- name: notification_get_by_dedupe_key --
SELECT * FROM lamplighter.notifications WHERE dedupe_key = %(dedupe_key)s;

-- name: notification_begin_attempt --
-- Count an attempt on a pending row before it is sent (committed first: no row lock is held
-- while the mail server or the webhook answers). No row: delivered or failed meanwhile.
UPDATE lamplighter.notifications
SET attempts = attempts + 1, last_attempt_at = lamplighter.now()
WHERE id = %(id)s AND status = 'pending'
RETURNING *;

-- name: notification_record_delivered --
UPDATE lamplighter.notifications
SET status = 'delivered', delivered_at = lamplighter.now(), last_error = %(note)s
WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: notification_record_failure --
-- An attempt that did not deliver: the row stays pending (another attempt follows) or fails.
UPDATE lamplighter.notifications
SET status = CASE WHEN %(final)s THEN 'failed' ELSE 'pending' END, last_error = %(error)s
WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: notification_list --
-- Newest first, optionally of one status.
SELECT * FROM lamplighter.notifications
WHERE (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: notification_retry --
-- A failed notification pending again, with a fresh allowance of attempts, and queued.
WITH retried AS (
    UPDATE lamplighter.notifications
    SET status = 'pending', attempts = 0
    WHERE id = %(id)s AND status = 'failed'
    RETURNING id
)
SELECT id, lamplighter.enqueue('notifications.deliver', jsonb_build_object('notification_id', id),
                               unique_key => 'notification:' || id) AS job_id
FROM retried;

-- name: notification_requeue_pending --
-- Pending rows older than min_age seconds queued for delivery again, oldest first. For a row
-- whose delivery job still waits or runs (retries included) the unique key returns that job
-- and nothing changes; a row whose job is gone (lost, dead without recording, pruned) gets a
-- new one. requeued: the row's job changed.
WITH due AS (
    SELECT id, job_id AS previous_job_id
    FROM lamplighter.notifications
    WHERE status = 'pending' AND created_at < lamplighter.now() - make_interval(secs => %(min_age)s::double precision)
    ORDER BY created_at
    LIMIT %(limit)s
),
queued AS (
    SELECT due.id, due.previous_job_id,
           lamplighter.enqueue('notifications.deliver', jsonb_build_object('notification_id', due.id),
                               unique_key => 'notification:' || due.id) AS job_id
    FROM due
)
UPDATE lamplighter.notifications n
SET job_id = queued.job_id
FROM queued
WHERE n.id = queued.id
RETURNING n.id, queued.job_id IS DISTINCT FROM queued.previous_job_id AS requeued;

-- Recipients, resolved when a notification is sent (issue 15's users). Across tenants by design:
-- the row names whom it is for; a role's users are the notification's tenant's (platform users
-- for a notification without one), so a tenant's superadmin never gets the platform's alerts.

-- name: notification_recipient_user --
-- An enabled user by id, by 'user:<id>' (the audit log's actor form) or by e-mail address.
SELECT email FROM lamplighter.users
WHERE disabled_at IS NULL
  AND (id::text = %(ref)s OR 'user:' || id = %(ref)s OR email_key = lower(%(ref)s));

-- name: notification_recipient_role --
-- Every enabled user with the role, of the notification's tenant (NULL: platform users).
SELECT email FROM lamplighter.users
WHERE disabled_at IS NULL AND role = %(role)s AND tenant_id IS NOT DISTINCT FROM %(tenant_id)s
ORDER BY id;

-- name: notification_recipient_tenant_owner --
-- A tenant's owners: its enabled superadmins (the users who manage the tenant).
SELECT email FROM lamplighter.users
WHERE disabled_at IS NULL AND role = 'superadmin' AND tenant_id = %(tenant)s
ORDER BY id;
