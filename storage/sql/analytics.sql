-- Hourly analytics rollups (lamplighter.analytics_hourly, migration 0014; domain/analytics.py).
-- Every tenant's rows: a rollup is one pass over an hour of the whole platform.

-- name: analytics_delete_hour --
-- An hour's rollup rows, removed before the hour is rolled up again.
DELETE FROM lamplighter.analytics_hourly WHERE hour = %(hour)s;

-- name: analytics_rollup_hour --
-- Count an hour's events per tenant: sign-ins and failed sign-ins, API calls (what a token
-- did), documents uploaded (audit log); jobs run and failed per actor (job history: attempts).
INSERT INTO lamplighter.analytics_hourly (hour, tenant, metric, subject, value)
SELECT %(hour)s::timestamptz, tenant, metric, subject, count(*)
FROM (
    SELECT coalesce(a.tenant_id, '') AS tenant,
           CASE WHEN a.action = 'user.signed_in' THEN 'logins'
                WHEN a.action = 'user.sign_in_failed' THEN 'failed_logins'
                WHEN a.action = 'document.uploaded' THEN 'documents_uploaded'
                ELSE 'api_calls' END AS metric,
           '' AS subject
    FROM lamplighter.audit_log a
    WHERE a.at >= %(hour)s::timestamptz AND a.at < %(hour)s::timestamptz + interval '1 hour'
      AND (a.action IN ('user.signed_in', 'user.sign_in_failed', 'document.uploaded') OR a.actor LIKE 'token:%%')
    UNION ALL
    SELECT coalesce(h.tenant_id, ''), m.metric, h.actor_name
    FROM lamplighter.job_history h
    CROSS JOIN LATERAL (VALUES ('jobs_run'), (CASE WHEN h.outcome IN ('failed', 'dead', 'lost') THEN 'jobs_failed' END))
        AS m(metric)
    WHERE h.finished_at >= %(hour)s::timestamptz AND h.finished_at < %(hour)s::timestamptz + interval '1 hour'
      AND m.metric IS NOT NULL
) counted
GROUP BY tenant, metric, subject;

-- name: analytics_totals --
-- Totals per metric (and per tenant, per subject) over a range of hours, for the reports.
SELECT tenant, metric, subject, sum(value)::bigint AS value
FROM lamplighter.analytics_hourly
WHERE hour >= %(since)s AND hour < %(until)s
GROUP BY tenant, metric, subject
ORDER BY metric, tenant, subject;

-- name: analytics_series --
-- One metric's totals per bucket (an hour or a day in the report's zone) over a range of hours.
SELECT date_trunc(%(bucket)s, hour AT TIME ZONE %(zone)s) AS bucket, sum(value)::bigint AS value
FROM lamplighter.analytics_hourly
WHERE hour >= %(since)s AND hour < %(until)s AND metric = %(metric)s
GROUP BY 1
ORDER BY 1;
