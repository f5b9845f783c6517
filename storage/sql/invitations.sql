-- Invitations (lamplighter.invitations).

-- name: invitation_delete_expired_batch --
-- One bounded batch of invitations expired before the cutoff; rows another transaction holds
-- are left for the next batch or the next run.
DELETE FROM lamplighter.invitations
WHERE id IN (SELECT id FROM lamplighter.invitations
             WHERE status = 'expired' AND expires_at < %(cutoff)s
             ORDER BY expires_at
             LIMIT %(batch_size)s
             FOR UPDATE SKIP LOCKED);
