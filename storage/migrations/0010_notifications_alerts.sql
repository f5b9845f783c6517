-- The notification outbox and alerts as incidents (issue 16). Number 0009 is issue 15's
-- (tenants, users, audit); the two are independent.

-- ---- the outbox -----------------------------------------------------------------------------
-- One row per message to deliver, written in the same transaction as the change that causes it
-- (domain/notifications.py, notify()). dedupe_key is unique: "once per incident" or "once per
-- threshold" holds in the database, whoever writes and however often. The same statement that
-- inserts the row enqueues its notifications.deliver job (storage/sql/notifications.sql), which
-- records every attempt here.
--   pending --delivered--> delivered
--      '-- out of attempts, or a permanent error (bad address, 4xx, unknown recipient) --> failed
--   failed --`lamplighter notifications retry ID`--> pending
-- recipient_kind says how recipient is read: an e-mail address or webhook URL as it is
-- ('address'), a user id ('user'), a role such as superadmin ('role'), a tenant id whose
-- owner is meant ('tenant_owner'). Webhooks take an address only. webhook_format: 'json' (the
-- notification as an object) or 'slack' (a {"text": ...} body an incoming Slack webhook takes).
CREATE TABLE IF NOT EXISTS lamplighter.notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key       text NOT NULL UNIQUE CHECK (btrim(dedupe_key) <> ''),
    kind             text NOT NULL CHECK (btrim(kind) <> ''),
    channel          text NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient_kind   text NOT NULL CHECK (recipient_kind IN ('user', 'role', 'tenant_owner', 'address')),
    recipient        text NOT NULL CHECK (btrim(recipient) <> ''),
    webhook_format   text CHECK (webhook_format IN ('json', 'slack')),
    subject          text NOT NULL,
    body_text        text NOT NULL,
    body_html        text,
    tenant_id        text,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    last_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT lamplighter.now(),
    delivered_at     timestamptz,
    job_id           uuid,  -- the delivery job last queued for it (`lamplighter job ID`)
    CHECK (channel = 'email' OR recipient_kind = 'address'),
    CHECK ((channel = 'webhook') = (webhook_format IS NOT NULL)),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
-- notifications.requeue_undelivered: pending rows, oldest first.
CREATE INDEX IF NOT EXISTS notifications_pending_idx
    ON lamplighter.notifications (created_at) WHERE status = 'pending';

-- The delivering actor, known to lamplighter.enqueue() from the moment the outbox exists: a
-- notification written right after a migration, before any worker or release step of this
-- version registered its actors, is queued, not refused. Workers and the release step
-- overwrite this row with the actor's declared options (actors/notifications.py).
INSERT INTO lamplighter.actors (name, queue_name, priority, options)
VALUES ('notifications.deliver', 'notifications', 20,
        '{"max_retries": 6, "time_limit": 120000}')
ON CONFLICT (name) DO NOTHING;

-- ---- managed-account notifications move into the outbox --------------------------------------
-- The accounts sweep wrote them to a table of their own until the channels existed. Its rows
-- become outbox rows (dedupe key managed_account:<request id>:<kind>, the old table's unique
-- pair): unread ones pending, which notifications.requeue_undelivered queues for delivery;
-- read ones delivered at the time they were read. The recipient is the request's created_by:
-- an e-mail address as it is, anything else a user id. The old name stays, as a view.
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('lamplighter.managed_account_notifications')) = 'r' THEN
        INSERT INTO lamplighter.notifications
            (dedupe_key, kind, channel, recipient_kind, recipient, subject, body_text, status, created_at,
             delivered_at)
        SELECT 'managed_account:' || m.request_id || ':' || m.kind, 'managed_account.' || m.kind, 'email',
               CASE WHEN m.recipient ~ '^[^@\s]+@[^@\s]+$' THEN 'address' ELSE 'user' END, m.recipient,
               'Managed account could not be created', m.message,
               CASE WHEN m.read_at IS NULL THEN 'pending' ELSE 'delivered' END, m.created_at, m.read_at
        FROM lamplighter.managed_account_notifications m
        ON CONFLICT (dedupe_key) DO NOTHING;
        DROP TABLE lamplighter.managed_account_notifications;
    END IF;
END
$$;

-- What an admin was told about a request of theirs that failed for good, by its old columns.
-- read_at: when the outbox delivered it.
CREATE OR REPLACE VIEW lamplighter.managed_account_notifications AS
-- (The CASE keeps the cast safe when a caller's filter on request_id is checked before the LIKE.)
SELECT n.id, n.recipient,
       CASE WHEN n.dedupe_key LIKE 'managed_account:%' THEN split_part(n.dedupe_key, ':', 2)::bigint END
           AS request_id,
       split_part(n.dedupe_key, ':', 3) AS kind, n.body_text AS message, n.created_at,
       n.delivered_at AS read_at
FROM lamplighter.notifications n
WHERE n.dedupe_key LIKE 'managed_account:%';

-- ---- alerts as incidents --------------------------------------------------------------------
-- An incident: a rule (e.g. jobs.failure_rate) firing for a subject (an actor, a queue, a
-- check, an integration). It opens once, counts repeats (count, last_seen_at) while open, and
-- resolves once; the next firing after that opens a new incident. details: what the rule saw
-- last. resolved_by: 'system:<rule>' when the rule saw it clear, the operator when closed by
-- hand (`lamplighter alerts resolve ID`).
CREATE TABLE IF NOT EXISTS lamplighter.alerts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule          text NOT NULL CHECK (rule ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$'),
    subject_kind  text NOT NULL CHECK (subject_kind ~ '^[a-z0-9_]+$'),
    subject       text NOT NULL CHECK (btrim(subject) <> ''),
    details       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    count         integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    opened_at     timestamptz NOT NULL DEFAULT lamplighter.now(),
    last_seen_at  timestamptz NOT NULL DEFAULT lamplighter.now(),
    resolved_at   timestamptz,
    resolved_by   text,
    CHECK ((resolved_at IS NULL) = (resolved_by IS NULL))
);
-- At most one open incident per rule and subject: open_or_touch's INSERT ... ON CONFLICT
-- arbitrates on it, so concurrent firings open one incident and count the rest.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_idx
    ON lamplighter.alerts (rule, subject_kind, subject) WHERE resolved_at IS NULL;
