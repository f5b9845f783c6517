-- Documents (lamplighter.documents; migration 0015). Every query that reads or changes documents
-- takes the tenant scope (storage/tenants.py); the only cross-tenant ones name the tenants that
-- have work, so that each tenant's job then runs on its own rows alone. Times: lamplighter.now().

-- name: document_insert --
-- A new pending document of the tenant, kept until the retention ends.
INSERT INTO lamplighter.documents (tenant_id, name, size_bytes, file_key, sha256, retention_until, uploaded_by)
VALUES (%(tenant_id)s, %(name)s, %(size_bytes)s, %(file_key)s, %(sha256)s,
        lamplighter.now() + make_interval(days => %(retention_days)s), %(uploaded_by)s)
RETURNING *;

-- name: document_queue_after_upload --
-- After an upload (same transaction): the tenant's classification and quota check, each at most
-- one waiting per tenant (its unique key).
SELECT lamplighter.enqueue('documents.classify', jsonb_build_object('tenant_id', %(tenant)s::text),
                           unique_key => 'documents.classify:' || %(tenant)s, tenant_id => %(tenant)s) AS classify_job,
       lamplighter.enqueue('quotas.check', jsonb_build_object('tenant_id', %(tenant)s::text),
                           unique_key => 'quotas.check:' || %(tenant)s, tenant_id => %(tenant)s) AS quota_job;

-- name: document_get --
SELECT * FROM lamplighter.documents
WHERE id = %(id)s AND (%(every_tenant)s OR tenant_id = %(tenant_id)s);

-- name: document_list --
-- Newest first, optionally of one status.
SELECT * FROM lamplighter.documents
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: document_claim_pending --
-- Up to a batch of the tenant's pending documents, locked for this transaction; documents another
-- worker holds are skipped (they are being classified there).
SELECT id, tenant_id, name, size_bytes, file_key, sha256 FROM lamplighter.documents
WHERE status = 'pending' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY tenant_id, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: document_record_classified --
-- A batch's results, one statement: ids with their classification and routing destination.
UPDATE lamplighter.documents d
SET status = 'classified', classification = r.classification, routing_destination = r.destination,
    last_error = NULL, classified_at = lamplighter.now(), updated_at = lamplighter.now()
FROM unnest(%(ids)s::bigint[], %(classifications)s::text[], %(destinations)s::text[]) AS r (id, classification, destination)
WHERE d.id = r.id AND d.status = 'pending' AND (%(every_tenant)s OR d.tenant_id = %(tenant_id)s)
RETURNING d.id;

-- name: document_record_failed --
-- A batch's failures, one statement: ids with their reasons.
UPDATE lamplighter.documents d
SET status = 'failed', last_error = r.error, failed_at = lamplighter.now(), updated_at = lamplighter.now()
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS r (id, error)
WHERE d.id = r.id AND d.status = 'pending' AND (%(every_tenant)s OR d.tenant_id = %(tenant_id)s)
RETURNING d.id;

-- name: document_retry_failed_batch --
-- One batch of the tenant's failed documents: back to pending with one more retry counted, or,
-- with the retries used up, to the dead-letter state.
WITH batch AS (
    SELECT id FROM lamplighter.documents
    WHERE status = 'failed' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
    ORDER BY failed_at, id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
UPDATE lamplighter.documents d
SET status = CASE WHEN d.retry_count < %(max_retries)s THEN 'pending' ELSE 'dead_lettered' END,
    retry_count = CASE WHEN d.retry_count < %(max_retries)s THEN d.retry_count + 1 ELSE d.retry_count END,
    updated_at = lamplighter.now()
FROM batch
WHERE d.id = batch.id
RETURNING d.id, d.status, d.retry_count;

-- name: document_redrive --
-- Dead-lettered documents of the tenant (all, or the listed ids) back to pending with a fresh
-- allowance of retries.
UPDATE lamplighter.documents
SET status = 'pending', retry_count = 0, last_error = NULL, failed_at = NULL, updated_at = lamplighter.now()
WHERE status = 'dead_lettered' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
  AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
RETURNING id, tenant_id;

-- name: document_claim_expired --
-- One batch of the tenant's documents past retention, locked until their files are deleted and
-- they are marked expired in the same transaction.
SELECT id, tenant_id, name, file_key FROM lamplighter.documents
WHERE status <> 'expired' AND retention_until <= lamplighter.now()
  AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY retention_until, id
LIMIT %(batch_size)s
FOR UPDATE SKIP LOCKED;

-- name: document_mark_expired --
UPDATE lamplighter.documents
SET status = 'expired', expired_at = lamplighter.now(), updated_at = lamplighter.now()
WHERE id = %(id)s AND status <> 'expired' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING id;

-- name: document_fan_out --
-- The periodic tick of a per-tenant actor: one job for each tenant with documents in the given
-- status (or past retention, for cleanup), at most one waiting per tenant. Reads only tenant ids.
SELECT t.tenant_id,
       lamplighter.enqueue(%(actor)s, jsonb_build_object('tenant_id', t.tenant_id),
                           unique_key => %(actor)s || ':' || t.tenant_id, tenant_id => t.tenant_id) AS job_id
FROM (SELECT DISTINCT tenant_id FROM lamplighter.documents
      WHERE CASE WHEN %(status)s::text = 'past_retention'
                 THEN status <> 'expired' AND retention_until <= lamplighter.now()
                 ELSE status = %(status)s END) t
ORDER BY t.tenant_id;
