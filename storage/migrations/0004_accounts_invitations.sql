-- Managed accounts at the identity provider (Zitadel) and invitations (issue 7).

-- One row per account an admin asked for. The per-minute sweep
-- (accounts.retry_managed_account_creations) claims due pending rows, marks them processing
-- and commits before calling Zitadel; the outcome lands back here.
--   pending --claim--> processing --created / linked--> completed
--                          |-- transient error, retries left --> pending (next_retry_at = now + schedule)
--                          '-- permanent error, or 5th retry failed --> failed
--   processing longer than the processing timeout --> counted as a transient failure
-- encrypted_password holds an enc:v1: value (storage/encryption.py) or NULL: rows inserted by
-- SQL carry none, and it is erased once the account exists or the request failed for good.
CREATE TABLE IF NOT EXISTS lamplighter.queued_managed_account_creations (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     text NOT NULL,
    username            text NOT NULL,
    given_name          text NOT NULL,
    family_name         text NOT NULL,
    email               text NOT NULL,
    role                text NOT NULL,
    encrypted_password  text,
    created_by          text NOT NULL,
    retry_count         integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    next_retry_at       timestamptz NOT NULL DEFAULT lamplighter.now(),
    claimed_at          timestamptz,
    last_error_message  text,
    idp_user_id         text,
    created_at          timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at          timestamptz NOT NULL DEFAULT lamplighter.now(),
    CHECK (status <> 'processing' OR claimed_at IS NOT NULL)
);
-- The sweep's claim: due pending rows, oldest first.
CREATE INDEX IF NOT EXISTS queued_managed_account_creations_due_idx
    ON lamplighter.queued_managed_account_creations (next_retry_at) WHERE status = 'pending';
-- The sweep's release of rows stuck in processing.
CREATE INDEX IF NOT EXISTS queued_managed_account_creations_processing_idx
    ON lamplighter.queued_managed_account_creations (claimed_at) WHERE status = 'processing';

-- What an admin is told when a request they made fails for good. Stored until the
-- notification channels (admin-maintenance) deliver them; read_at marks them seen.
CREATE TABLE IF NOT EXISTS lamplighter.managed_account_notifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient    text NOT NULL,
    request_id   bigint NOT NULL
                 REFERENCES lamplighter.queued_managed_account_creations (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    message      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT lamplighter.now(),
    read_at      timestamptz,
    UNIQUE (request_id, kind)
);
CREATE INDEX IF NOT EXISTS managed_account_notifications_unread_idx
    ON lamplighter.managed_account_notifications (recipient, created_at) WHERE read_at IS NULL;

-- Invitations to join a family/organisation. token_hash is the SHA-256 (hex) of the token
-- sent by e-mail: a stolen table does not hand out invitations.
CREATE TABLE IF NOT EXISTS lamplighter.invitations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  text NOT NULL,
    email            text NOT NULL,
    role             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'accepted', 'declined', 'revoked', 'expired')),
    token_hash       text NOT NULL UNIQUE,
    display_code     text,
    invited_by       text NOT NULL,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at       timestamptz NOT NULL DEFAULT lamplighter.now()
);
CREATE INDEX IF NOT EXISTS invitations_organization_idx ON lamplighter.invitations (organization_id, status);
-- invitations.prune_expired: expired rows by age.
CREATE INDEX IF NOT EXISTS invitations_expired_idx
    ON lamplighter.invitations (expires_at) WHERE status = 'expired';
