-- invitations.prune_expired marks pending invitations past expires_at as expired, and deletes
-- expired invitations 30 days after they expired: until then the invitee and the inviter can
-- still see that it expired. expired_at is the database's now when the job marked the row; a row
-- marked expired by anything else has none, and its expires_at counts instead (the rule before
-- this migration). Number 0007 is taken by the queue engine's migration; the two are independent.
ALTER TABLE lamplighter.invitations ADD COLUMN IF NOT EXISTS expired_at timestamptz;

-- The job's first step: pending invitations by expiry.
CREATE INDEX IF NOT EXISTS invitations_pending_expiry_idx
    ON lamplighter.invitations (expires_at) WHERE status = 'pending';

-- Its second step: expired invitations by the moment they expired.
CREATE INDEX IF NOT EXISTS invitations_expired_since_idx
    ON lamplighter.invitations ((coalesce(expired_at, expires_at))) WHERE status = 'expired';

-- Served the deletion by expires_at alone, which nothing runs any more. A previous release's
-- prune still running during a deploy scans this (small) table instead.
DROP INDEX IF EXISTS lamplighter.invitations_expired_idx;
