-- Invitations (lamplighter.invitations). Times come from lamplighter.now(), the database's clock.

-- name: invitation_expire_batch --
-- One bounded batch of pending invitations past expires_at, marked expired with the moment it
-- happened; rows another transaction holds (an invitee accepting right now) are left for the next
-- batch or the next run, and see the state that transaction leaves.
UPDATE lamplighter.invitations
SET status = 'expired', expired_at = lamplighter.now(), updated_at = lamplighter.now()
WHERE id IN (SELECT id FROM lamplighter.invitations
             WHERE status = 'pending' AND expires_at < lamplighter.now()
             ORDER BY expires_at
             LIMIT %(batch_size)s
             FOR UPDATE SKIP LOCKED);

-- name: invitation_delete_expired_batch --
-- One bounded batch of invitations expired longer than the retention ago (a row marked expired
-- without expired_at counts from its expires_at); rows another transaction holds are left for
-- the next batch or the next run.
DELETE FROM lamplighter.invitations
WHERE id IN (SELECT id FROM lamplighter.invitations
             WHERE status = 'expired'
               AND coalesce(expired_at, expires_at) < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
             ORDER BY coalesce(expired_at, expires_at)
             LIMIT %(batch_size)s
             FOR UPDATE SKIP LOCKED);
