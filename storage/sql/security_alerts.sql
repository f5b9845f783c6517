-- notifications.security_alerts (domain/security_alerts.py): audit events after a watermark and
-- the patterns it looks for. Every query here reads all tenants' rows: incidents are the
-- platform's to see.

-- name: security_events_after --
-- Sign-ins, failed sign-ins and privilege changes after an id, in id order, at least settle
-- seconds old.
SELECT id, at, actor, action, target_type, target_id, tenant_id, host(source_address) AS source_address, details
FROM lamplighter.audit_log
WHERE id > %(after_id)s AND at <= lamplighter.now() - make_interval(secs => %(settle_seconds)s)
  AND action IN ('user.sign_in_failed', 'user.signed_in', 'user.created', 'user.role_changed', 'token.created')
ORDER BY id
LIMIT %(limit)s;

-- name: security_failed_logins_for_account --
-- Failed sign-ins for one user (target_type 'user') or one unknown address ('login') in a window
-- ending at an instant.
SELECT count(*) AS failures
FROM lamplighter.audit_log
WHERE action = 'user.sign_in_failed' AND target_type = %(target_type)s AND target_id = %(target_id)s
  AND at > %(until)s::timestamptz - make_interval(secs => %(window_seconds)s) AND at <= %(until)s::timestamptz;

-- name: security_failed_logins_from_address --
-- Failed sign-ins from one address in a window ending at an instant, leaving out those of
-- accounts that had a burst of their own in it (that burst is the incident).
SELECT count(*) AS failures, count(DISTINCT target_id) AS accounts
FROM lamplighter.audit_log
WHERE action = 'user.sign_in_failed' AND source_address = %(source)s::inet
  AND at > %(until)s::timestamptz - make_interval(secs => %(window_seconds)s) AND at <= %(until)s::timestamptz
  AND (target_id IS NULL OR target_id <> ALL (%(burst_accounts)s::text[]));

-- name: security_address_seen_before --
-- Whether a user signed in from an address in the days before an instant.
SELECT EXISTS (
    SELECT 1 FROM lamplighter.audit_log
    WHERE action = 'user.signed_in' AND target_type = 'user' AND target_id = %(user_id)s
      AND source_address = %(source)s::inet
      AND at >= %(before)s::timestamptz - make_interval(days => %(days)s) AND at < %(before)s::timestamptz AND id <> %(event_id)s
) AS seen;

-- name: security_user_role --
-- A user's role now (admin logins are a superadmin's).
SELECT role, email FROM lamplighter.users WHERE id = %(user_id)s;

-- name: security_recent_failed_login --
-- Whether a user (kind 'user') or an address (kind 'address') had a failed sign-in in the last
-- quiet_seconds.
SELECT EXISTS (
    SELECT 1 FROM lamplighter.audit_log
    WHERE action = 'user.sign_in_failed' AND at > lamplighter.now() - make_interval(secs => %(quiet_seconds)s)
      AND ((%(kind)s = 'user' AND target_type = 'user' AND target_id = %(subject)s)
           OR (%(kind)s = 'address' AND host(source_address) = %(subject)s))
) AS recent;

-- name: security_start_position --
-- Where the reader starts on its first run: after the last audit event before the look-back.
SELECT coalesce((SELECT id FROM lamplighter.audit_log
                 WHERE at < lamplighter.now() - make_interval(secs => %(lookback_seconds)s)
                 ORDER BY at DESC LIMIT 1), 0) AS position;
