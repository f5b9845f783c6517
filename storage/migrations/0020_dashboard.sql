-- The dashboard (issue 24): a job event's audit row says where the action came from. Operator
-- actions on jobs (storage/sql/jobs.sql: redrive, cancel, discard, bulk retry) put the request's
-- address in the event's detail as "source"; the job_events view's trigger now copies it into
-- the audit row's source_address, as every other audited action has it. A detail without one
-- (workers, the scheduler, the previous release) leaves it null, as before.
CREATE OR REPLACE FUNCTION lamplighter.job_event_record_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_source inet;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RETURN NULL;  -- the previous release's pruning: a job's events stay in the audit log
    END IF;
    BEGIN
        v_source := nullif(NEW.detail ->> 'source', '')::inet;
    EXCEPTION WHEN invalid_text_representation THEN
        v_source := NULL;  -- not an address: kept in the details only
    END;
    INSERT INTO lamplighter.audit_log (actor, action, target_type, target_id, tenant_id, source_address, details)
    VALUES (coalesce(NEW.requested_by, 'unknown'), 'job.' || NEW.event, 'job', NEW.job_id::text,
            (SELECT q.tenant_id FROM dramatiq.queue q WHERE q.message_id = NEW.job_id), v_source,
            coalesce(NEW.detail, '{}'))
    RETURNING id, at INTO NEW.id, NEW.at;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS job_events_record ON lamplighter.job_events;
CREATE TRIGGER job_events_record INSTEAD OF INSERT OR DELETE ON lamplighter.job_events
    FOR EACH ROW EXECUTE FUNCTION lamplighter.job_event_record_v2();
