-- Alerts as incidents (lamplighter.alerts; migration 0010). The partial unique index
-- alerts_open_idx holds at most one open incident per rule and subject; the queries below lean
-- on it instead of reading first, so concurrent firings and resolutions need no lock of ours.

-- name: alert_open_or_touch --
-- Open an incident, or count a repeat of the open one (last_seen_at, details: the latest).
-- opened: this call opened it (a new row starts at count 1; a repeat makes it 2 or more).
INSERT INTO lamplighter.alerts (rule, subject_kind, subject, details)
VALUES (%(rule)s, %(subject_kind)s, %(subject)s, %(details)s::jsonb)
ON CONFLICT (rule, subject_kind, subject) WHERE resolved_at IS NULL
DO UPDATE SET count = lamplighter.alerts.count + 1, last_seen_at = lamplighter.now(),
              details = EXCLUDED.details
RETURNING *, count = 1 AS opened;

-- name: alert_resolve --
-- Close the open incident of a rule and subject; no row when none is open.
UPDATE lamplighter.alerts
SET resolved_at = lamplighter.now(), resolved_by = %(by)s
WHERE rule = %(rule)s AND subject_kind = %(subject_kind)s AND subject = %(subject)s AND resolved_at IS NULL
RETURNING *;

-- name: alert_resolve_by_id --
-- Close an incident by hand; no row when it is not open.
UPDATE lamplighter.alerts
SET resolved_at = lamplighter.now(), resolved_by = %(by)s
WHERE id = %(id)s AND resolved_at IS NULL
RETURNING *;

-- name: alert_get --
SELECT * FROM lamplighter.alerts WHERE id = %(id)s;

-- name: alert_list --
-- Newest first; open ones only if asked.
SELECT * FROM lamplighter.alerts
WHERE NOT %(open_only)s OR resolved_at IS NULL
ORDER BY id DESC
LIMIT %(limit)s;
