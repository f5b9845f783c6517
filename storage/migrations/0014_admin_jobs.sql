-- Admin jobs (issue 18). Numbers 0012 and 0013 belong to other branches; this one is independent
-- of them.

-- ---- audit archival -------------------------------------------------------------------------
-- One row per audit month being archived, and the last step that finished for it, so a run
-- killed at any step resumes at the next one (domain/archive.py):
--   exported (archive and manifest written) -> verified (read back: counts and checksums)
--   -> detached (the month left the log) -> done (its table dropped)
-- rows/sha256: what the manifest says; data_key/manifest_key: where they are in the file store.
CREATE TABLE IF NOT EXISTS lamplighter.audit_archives (
    month         date PRIMARY KEY CHECK (extract(day FROM month) = 1),
    step          text NOT NULL CHECK (step IN ('started', 'exported', 'verified', 'detached', 'done')),
    data_key      text,
    manifest_key  text,
    rows          bigint CHECK (rows >= 0),
    sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    started_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    CHECK (step = 'started' OR (data_key IS NOT NULL AND manifest_key IS NOT NULL AND rows IS NOT NULL))
);

-- ---- analytics rollups ----------------------------------------------------------------------
-- One row per UTC hour, tenant ('' for platform events and jobs without a tenant label), metric
-- (logins, failed_logins, api_calls, jobs_run, jobs_failed, documents_uploaded) and subject (the
-- actor for job metrics, else ''). analytics.rollup replaces an hour whole; the reports read
-- these rows. The tenant is a label, like a job's: no foreign key (rollups outlive tenants).
CREATE TABLE IF NOT EXISTS lamplighter.analytics_hourly (
    hour      timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    tenant    text NOT NULL DEFAULT '',
    metric    text NOT NULL CHECK (metric ~ '^[a-z_]+$'),
    subject   text NOT NULL DEFAULT '',
    value     bigint NOT NULL CHECK (value >= 0),
    PRIMARY KEY (hour, tenant, metric, subject)
);

-- ---- reports --------------------------------------------------------------------------------
-- A report is identified by its kind, its period (local dates in zone: [period_start,
-- period_end)) and that zone: a re-run replaces it. data: the figures (what CSV and HTML render).
CREATE TABLE IF NOT EXISTS lamplighter.reports (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('daily', 'weekly', 'monthly_compliance')),
    period_start  date NOT NULL,
    period_end    date NOT NULL CHECK (period_end > period_start),
    zone          text NOT NULL,
    data          jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    csv_key       text NOT NULL,
    html_key      text NOT NULL,
    generated_at  timestamptz NOT NULL DEFAULT lamplighter.now(),
    runs          integer NOT NULL DEFAULT 1 CHECK (runs >= 1),
    UNIQUE (kind, period_start, zone)
);
CREATE INDEX IF NOT EXISTS reports_generated_idx ON lamplighter.reports (generated_at);

-- ---- watermarks -----------------------------------------------------------------------------
-- Where a job that reads a log in order (notifications.security_alerts over the audit log,
-- alerts.failed_jobs over the job history) stopped: the last id it has handled.
CREATE TABLE IF NOT EXISTS lamplighter.watermarks (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT lamplighter.now()
);

-- security_alerts: a user's earlier sign-ins from an address (admin login from an address
-- not seen in 30 days).
CREATE INDEX IF NOT EXISTS audit_log_action_idx ON lamplighter.audit_log (action, at);
-- alerts.failed_jobs: failures in the window, per actor.
CREATE INDEX IF NOT EXISTS job_history_actor_failed_idx
    ON lamplighter.job_history (finished_at, actor_name) WHERE outcome IN ('failed', 'dead', 'lost');

-- The archive reads a month's table by name, attached to the log or detached from it (a run
-- killed after the detach reads it there). NULL (no row) when the table is gone.
CREATE OR REPLACE FUNCTION lamplighter.audit_archive_stats_v1(p_month date)
RETURNS TABLE (rows bigint, id_sum numeric, first_id bigint, last_id bigint, attached boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_table regclass := to_regclass(format('lamplighter.%I',
                                           'audit_log_' || to_char(p_month, '"y"YYYY"m"MM')));
BEGIN
    IF v_table IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format('SELECT count(*), coalesce(sum(id), 0)::numeric, min(id), max(id), '
                                '       EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = %L::regclass) '
                                'FROM %s', v_table, v_table);
END
$$;

-- One batch of a month's rows in id order, after p_after_id; the same columns as the log.
CREATE OR REPLACE FUNCTION lamplighter.audit_archive_rows_v1(p_month date, p_after_id bigint, p_limit integer)
RETURNS SETOF lamplighter.audit_log
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_table regclass := to_regclass(format('lamplighter.%I',
                                           'audit_log_' || to_char(p_month, '"y"YYYY"m"MM')));
BEGIN
    IF v_table IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format('SELECT * FROM %s WHERE id > $1 ORDER BY id LIMIT $2', v_table)
        USING p_after_id, p_limit;
END
$$;
