-- Audit-log archival (domain/audit_archive.py): the progress of each month, and its rows read
-- by the month's table name (functions in migration 0014).

-- name: audit_archive_get --
-- A month's archival progress; no row before it started.
SELECT month, step, data_key, manifest_key, rows, sha256, started_at, updated_at
FROM lamplighter.audit_archives WHERE month = %(month)s;

-- name: audit_archive_start --
-- A month starts (or, changed since its export, starts again) at the export.
INSERT INTO lamplighter.audit_archives (month, step) VALUES (%(month)s, 'started')
ON CONFLICT (month) DO UPDATE SET step = 'started', updated_at = lamplighter.now();

-- name: audit_archive_save --
-- Record the step that just finished for a month (with what the manifest says once written).
UPDATE lamplighter.audit_archives AS a
SET step = %(step)s, data_key = coalesce(%(data_key)s, a.data_key),
    manifest_key = coalesce(%(manifest_key)s, a.manifest_key), rows = coalesce(%(rows)s, a.rows),
    sha256 = coalesce(%(sha256)s, a.sha256), updated_at = lamplighter.now()
WHERE month = %(month)s;

-- name: audit_archive_months_due --
-- Months to work on, oldest first: unfinished archivals, and months still in the log (or
-- detached and left as tables) that are older than the cutoff.
SELECT month FROM lamplighter.audit_archives WHERE step <> 'done'
UNION
SELECT to_date(right(c.relname, 7), 'YYYY"m"MM')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'lamplighter' AND c.relname ~ '^audit_log_y[0-9]{4}m[0-9]{2}$' AND c.relkind = 'r'
  AND to_date(right(c.relname, 7), 'YYYY"m"MM') < %(cutoff)s
ORDER BY 1;

-- name: audit_archive_default_months --
-- Months before the cutoff whose rows wait in the default partition (their month never had a
-- partition of its own); the archive creates one, which takes them over, before archiving.
SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC')::date AS month
FROM lamplighter.audit_log_default
WHERE at < %(cutoff)s::date::timestamp AT TIME ZONE 'UTC'
ORDER BY 1;

-- name: audit_archive_stats --
-- Rows, id sum and id range of a month's table, and whether it is still in the log; no row
-- once the table is gone.
SELECT rows, id_sum, first_id, last_id, attached FROM lamplighter.audit_archive_stats_v1(%(month)s);

-- name: audit_archive_rows --
-- One batch of a month's rows, in id order, after an id.
SELECT id, at, actor, action, target_type, target_id, tenant_id, host(source_address) AS source_address, details
FROM lamplighter.audit_archive_rows_v1(%(month)s, %(after_id)s, %(limit)s);
