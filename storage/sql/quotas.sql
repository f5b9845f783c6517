-- Tenant quotas (lamplighter.tenant_quotas; migration 0015). An upload reserves its room with one
-- conditional UPDATE; quotas.check recomputes the usage from the documents.

-- name: quota_ensure --
-- The tenant's quota row with the default limits, unless it has one.
INSERT INTO lamplighter.tenant_quotas (tenant_id, max_documents, max_bytes)
VALUES (%(tenant_id)s, %(max_documents)s, %(max_bytes)s)
ON CONFLICT (tenant_id) DO NOTHING;

-- name: quota_get --
SELECT * FROM lamplighter.tenant_quotas WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s) ORDER BY tenant_id;

-- name: quota_reserve --
-- Room for one more document of size_bytes, taken now; no row: uploads are blocked or it would
-- not fit.
UPDATE lamplighter.tenant_quotas
SET documents_used = documents_used + 1, bytes_used = bytes_used + %(size_bytes)s, updated_at = lamplighter.now()
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
  AND NOT uploads_blocked
  AND documents_used + 1 <= max_documents AND bytes_used + %(size_bytes)s <= max_bytes
RETURNING *;

-- name: quota_set_limits --
UPDATE lamplighter.tenant_quotas
SET max_documents = coalesce(%(max_documents)s, max_documents), max_bytes = coalesce(%(max_bytes)s, max_bytes),
    updated_at = lamplighter.now()
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING *;

-- name: quota_recompute --
-- The tenant's usage from its documents that are not expired; uploads blocked at or over a
-- limit and unblocked under both; with whether they were blocked before.
WITH previous AS (
    SELECT tenant_id, uploads_blocked FROM lamplighter.tenant_quotas
    WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
    FOR UPDATE
), usage AS (
    SELECT previous.tenant_id, count(d.id) AS documents, coalesce(sum(d.size_bytes), 0) AS bytes
    FROM previous LEFT JOIN lamplighter.documents d ON d.tenant_id = previous.tenant_id AND d.status <> 'expired'
    GROUP BY previous.tenant_id
)
UPDATE lamplighter.tenant_quotas q
SET documents_used = usage.documents, bytes_used = usage.bytes,
    uploads_blocked = usage.documents >= q.max_documents OR usage.bytes >= q.max_bytes,
    checked_at = lamplighter.now(), updated_at = lamplighter.now()
FROM usage JOIN previous ON previous.tenant_id = usage.tenant_id
WHERE q.tenant_id = usage.tenant_id
RETURNING q.*, previous.uploads_blocked AS was_blocked;

-- name: quota_fan_out --
-- The hourly tick: one quotas.check per tenant, at most one waiting per tenant.
SELECT t.id AS tenant_id,
       lamplighter.enqueue('quotas.check', jsonb_build_object('tenant_id', t.id),
                           unique_key => 'quotas.check:' || t.id, tenant_id => t.id) AS job_id
FROM lamplighter.tenants t
ORDER BY t.id;
