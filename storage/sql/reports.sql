-- Stored reports (lamplighter.reports, migration 0014; domain/reports.py) and the audit-log
-- figures of the monthly compliance report.

-- name: report_save --
-- Store a report; its kind, period and zone are its identity, so a re-run replaces the figures.
INSERT INTO lamplighter.reports AS r (kind, period_start, period_end, zone, data, csv_key, html_key)
VALUES (%(kind)s, %(period_start)s, %(period_end)s, %(zone)s, %(data)s::jsonb, %(csv_key)s, %(html_key)s)
ON CONFLICT (kind, period_start, zone) DO UPDATE
SET period_end = EXCLUDED.period_end, data = EXCLUDED.data, csv_key = EXCLUDED.csv_key,
    html_key = EXCLUDED.html_key, generated_at = lamplighter.now(), runs = r.runs + 1
RETURNING id;

-- name: report_list --
-- Newest period first, optionally of one kind.
SELECT id, kind, period_start, period_end, zone, data, csv_key, html_key, generated_at, runs
FROM lamplighter.reports
WHERE %(kind)s::text IS NULL OR kind = %(kind)s
ORDER BY period_start DESC, kind, id DESC
LIMIT %(limit)s;

-- name: report_get --
SELECT id, kind, period_start, period_end, zone, data, csv_key, html_key, generated_at, runs
FROM lamplighter.reports WHERE id = %(id)s;

-- name: report_find --
-- A report by its identity.
SELECT id, kind, period_start, period_end, zone, data, csv_key, html_key, generated_at, runs
FROM lamplighter.reports WHERE kind = %(kind)s AND period_start = %(period_start)s AND zone = %(zone)s;

-- name: report_compliance_events --
-- The audit rows a compliance report counts in a period, per action and actor kind ('user',
-- 'token', 'cli', 'system', ...), every tenant's.
SELECT action, split_part(actor, ':', 1) AS actor_kind, coalesce(tenant_id, '') AS tenant, count(*) AS events
FROM lamplighter.audit_log
WHERE at >= %(since)s AND at < %(until)s
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- name: report_compliance_days --
-- Audit rows per day (in the report's zone) of a period, for the compliance chart.
SELECT (at AT TIME ZONE %(zone)s)::date AS day, count(*) AS events
FROM lamplighter.audit_log
WHERE at >= %(since)s AND at < %(until)s AND split_part(actor, ':', 1) NOT IN ('system', 'worker')
GROUP BY 1
ORDER BY 1;
