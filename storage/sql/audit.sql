-- The audit log (lamplighter.audit_log, partitioned by month; migration 0009 explains the
-- partitions and the functions below). Rows are only ever inserted: a trigger refuses UPDATE and
-- DELETE, and archiving detaches whole months.

-- name: audit_insert --
INSERT INTO lamplighter.audit_log (actor, action, target_type, target_id, tenant_id, source_address, details)
VALUES (%(actor)s, %(action)s, %(target_type)s, %(target_id)s, %(tenant_id)s, %(source_address)s::inet,
        %(details)s::jsonb)
RETURNING id;

-- name: audit_list --
-- Newest first, by actor, action (exact, or a prefix ending in '*': 'user.*'), since an instant.
SELECT id, at, actor, action, target_type, target_id, tenant_id, host(source_address) AS source_address, details
FROM lamplighter.audit_log
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(action)s::text IS NULL OR action = %(action)s
       OR (right(%(action)s, 1) = '*' AND starts_with(action, rtrim(%(action)s, '*'))))
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
ORDER BY at DESC, id DESC
LIMIT %(limit)s;

-- name: audit_partitions_ensure --
SELECT partition_name, moved_rows FROM lamplighter.audit_partitions_ensure_v1(%(months_ahead)s);

-- name: audit_partition_create --
SELECT partition_name, created, moved_rows FROM lamplighter.audit_partition_create_v1(%(month)s::date);

-- name: audit_partition_detach --
SELECT lamplighter.audit_partition_detach_v1(%(month)s::date) AS detached;

-- name: audit_partitions --
-- The log's partitions with their bounds (the default partition's is DEFAULT), and their row
-- estimates; plus tables of archived months, detached and not yet dropped.
SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bounds, c.reltuples::bigint AS estimated_rows,
       true AS attached
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'lamplighter.audit_log'::regclass
UNION ALL
SELECT c.relname, NULL, c.reltuples::bigint, false
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'lamplighter' AND c.relname ~ '^audit_log_y[0-9]{4}m[0-9]{2}$' AND c.relkind = 'r'
  AND NOT c.relispartition
ORDER BY 1;

-- name: audit_archive_drop --
SELECT lamplighter.audit_archive_drop_v1(%(month)s::date) AS dropped;

-- name: audit_current_month --
-- The month (UTC) the log is writing now, by the database's clock.
SELECT date_trunc('month', lamplighter.now() AT TIME ZONE 'UTC')::date AS month;
