-- Usage reports to the billing service (lamplighter.billing_usage_reports; migration 0015). A
-- period is a UTC day; a report's usage is measured once, as of the period's end, and kept with
-- its idempotency key, so every post of it (a retry, a re-run) carries the same body and key.

-- name: billing_fan_out --
-- The daily tick: one billing.report_usage per tenant for yesterday (UTC), at most one waiting
-- per tenant and period.
SELECT t.id AS tenant_id, p.period,
       lamplighter.enqueue('billing.report_usage', jsonb_build_object('tenant_id', t.id, 'period', p.period::text),
                           unique_key => 'billing.report_usage:' || t.id || ':' || p.period::text,
                           tenant_id => t.id) AS job_id
FROM lamplighter.tenants t,
     (SELECT (lamplighter.now() AT TIME ZONE 'UTC')::date - 1 AS period) p
ORDER BY t.id;

-- name: billing_report_prepare --
-- The tenant's report for the period, measured now unless it exists: documents stored and their
-- bytes at the period's end, documents uploaded during it.
INSERT INTO lamplighter.billing_usage_reports
    (tenant_id, period, idempotency_key, documents_stored, bytes_stored, documents_uploaded)
SELECT %(tenant_id)s, %(period)s::date, 'usage:' || %(tenant_id)s || ':' || %(period)s,
       count(*) FILTER (WHERE d.created_at < b.period_end AND (d.expired_at IS NULL OR d.expired_at >= b.period_end)),
       coalesce(sum(d.size_bytes) FILTER (WHERE d.created_at < b.period_end
                                           AND (d.expired_at IS NULL OR d.expired_at >= b.period_end)), 0),
       count(*) FILTER (WHERE d.created_at >= b.period_start AND d.created_at < b.period_end)
FROM (SELECT (%(period)s::date)::timestamp AT TIME ZONE 'UTC' AS period_start,
             (%(period)s::date + 1)::timestamp AT TIME ZONE 'UTC' AS period_end) b
LEFT JOIN lamplighter.documents d ON d.tenant_id = %(tenant_id)s
ON CONFLICT (tenant_id, period) DO NOTHING;

-- name: billing_report_get --
SELECT * FROM lamplighter.billing_usage_reports
WHERE period = %(period)s::date AND (%(every_tenant)s OR tenant_id = %(tenant_id)s);

-- name: billing_report_begin_attempt --
-- Count an attempt on a report not yet reported (committed before the post).
UPDATE lamplighter.billing_usage_reports
SET attempts = attempts + 1
WHERE period = %(period)s::date AND status = 'pending' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING *;

-- name: billing_report_record --
-- An attempt's end: reported, failed for good, or still pending with the error.
UPDATE lamplighter.billing_usage_reports
SET status = %(status)s, response_code = %(response_code)s, last_error = %(error)s,
    reported_at = CASE WHEN %(status)s = 'reported' THEN lamplighter.now() END
WHERE period = %(period)s::date AND status = 'pending' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING tenant_id;

-- name: billing_report_list --
SELECT * FROM lamplighter.billing_usage_reports
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY period DESC, tenant_id
LIMIT %(limit)s;
