-- Documents and tenants (issue 20): documents with classification and routing, tenant quotas,
-- billing usage reports and signed webhooks. Every table is a tenant's: tenant_id NOT NULL with a
-- foreign key, and a delivery's event and endpoint belong to the delivery's own tenant (composite
-- foreign keys), so no row of one tenant can point at another's.

-- ---- documents ------------------------------------------------------------------------------
--   pending --classify--> classified
--      '-- the classifier fails --> failed --retry (retry_count < 3)--> pending
--                                      '-- retry_count = 3 --> dead_lettered --redrive--> pending
--   any but expired, past retention_until --cleanup (file deleted first)--> expired
-- file_key names the bytes in the platform's file store (storage/files.py).
CREATE TABLE IF NOT EXISTS lamplighter.documents (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            text NOT NULL REFERENCES lamplighter.tenants (id),
    name                 text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 255),
    size_bytes           bigint NOT NULL CHECK (size_bytes >= 0),
    file_key             text NOT NULL UNIQUE,
    sha256               text NOT NULL,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'classified', 'failed', 'dead_lettered', 'expired')),
    classification       text,
    routing_destination  text,
    retry_count          integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    last_error           text,
    retention_until      timestamptz NOT NULL,
    uploaded_by          text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at           timestamptz NOT NULL DEFAULT lamplighter.now(),
    classified_at        timestamptz,
    failed_at            timestamptz,
    expired_at           timestamptz,
    CHECK (status <> 'classified' OR (classification IS NOT NULL AND routing_destination IS NOT NULL)),
    CHECK ((status = 'expired') = (expired_at IS NOT NULL))
);
-- documents.classify: one tenant's pending documents, oldest first.
CREATE INDEX IF NOT EXISTS documents_pending_idx ON lamplighter.documents (tenant_id, id) WHERE status = 'pending';
-- documents.retry_failed: failed documents, oldest failure first.
CREATE INDEX IF NOT EXISTS documents_failed_idx ON lamplighter.documents (failed_at) WHERE status = 'failed';
-- documents.cleanup_expired: documents past retention.
CREATE INDEX IF NOT EXISTS documents_retention_idx ON lamplighter.documents (retention_until)
    WHERE status <> 'expired';
-- Listings and usage by tenant.
CREATE INDEX IF NOT EXISTS documents_tenant_idx ON lamplighter.documents (tenant_id, status);

-- ---- quotas ---------------------------------------------------------------------------------
-- An upload reserves its document and bytes here (one conditional UPDATE, so concurrent uploads
-- cannot overrun the limit); quotas.check recomputes the usage from the documents and blocks
-- uploads at or over a limit, unblocks them under it.
CREATE TABLE IF NOT EXISTS lamplighter.tenant_quotas (
    tenant_id        text PRIMARY KEY REFERENCES lamplighter.tenants (id),
    max_documents    bigint NOT NULL CHECK (max_documents >= 0),
    max_bytes        bigint NOT NULL CHECK (max_bytes >= 0),
    documents_used   bigint NOT NULL DEFAULT 0 CHECK (documents_used >= 0),
    bytes_used       bigint NOT NULL DEFAULT 0 CHECK (bytes_used >= 0),
    uploads_blocked  boolean NOT NULL DEFAULT false,
    checked_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT lamplighter.now()
);

-- ---- billing --------------------------------------------------------------------------------
-- One row per tenant and period (a UTC day): the usage as first measured, and the idempotency
-- key every post of it carries, so a re-run or a retried post never bills twice.
CREATE TABLE IF NOT EXISTS lamplighter.billing_usage_reports (
    tenant_id           text NOT NULL REFERENCES lamplighter.tenants (id),
    period              date NOT NULL,
    idempotency_key     text NOT NULL UNIQUE,
    documents_stored    bigint NOT NULL,
    bytes_stored        bigint NOT NULL,
    documents_uploaded  bigint NOT NULL,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'reported', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    response_code       integer,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT lamplighter.now(),
    reported_at         timestamptz,
    PRIMARY KEY (tenant_id, period),
    CHECK ((status = 'reported') = (reported_at IS NOT NULL))
);

-- ---- webhooks -------------------------------------------------------------------------------
-- secret (and previous_secret while a rotation lasts): whsec_... encrypted by
-- storage/encryption.py. event_types empty: every event.
CREATE TABLE IF NOT EXISTS lamplighter.webhook_endpoints (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id                   text NOT NULL REFERENCES lamplighter.tenants (id),
    url                         text NOT NULL CHECK (url ~ '^https?://'),
    secret                      text NOT NULL CHECK (secret LIKE 'enc:v1:%'),
    previous_secret             text CHECK (previous_secret LIKE 'enc:v1:%'),
    previous_secret_expires_at  timestamptz,
    legacy_signature            boolean NOT NULL DEFAULT false,
    event_types                 text[] NOT NULL DEFAULT '{}',
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    disabled_at                 timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at                  timestamptz NOT NULL DEFAULT lamplighter.now(),
    UNIQUE (id, tenant_id),
    CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL)),
    CHECK (enabled = (disabled_at IS NULL))
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_tenant_idx ON lamplighter.webhook_endpoints (tenant_id) WHERE enabled;

CREATE TABLE IF NOT EXISTS lamplighter.webhook_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES lamplighter.tenants (id),
    event_type  text NOT NULL CHECK (event_type ~ '^[a-z_]+(\.[a-z0-9_]+)+$'),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT lamplighter.now(),
    UNIQUE (id, tenant_id)
);

--   pending --2xx--> delivered
--      '-- 410, or out of attempts --> failed (the endpoint is disabled)
--      '-- its endpoint disabled --> cancelled
CREATE TABLE IF NOT EXISTS lamplighter.webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES lamplighter.tenants (id),
    event_id         bigint NOT NULL,
    endpoint_id      bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    response_code    integer,
    last_error       text,
    next_attempt_at  timestamptz,
    last_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT lamplighter.now(),
    delivered_at     timestamptz,
    UNIQUE (event_id, endpoint_id),
    FOREIGN KEY (event_id, tenant_id) REFERENCES lamplighter.webhook_events (id, tenant_id) ON DELETE CASCADE,
    FOREIGN KEY (endpoint_id, tenant_id) REFERENCES lamplighter.webhook_endpoints (id, tenant_id) ON DELETE CASCADE,
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending_idx ON lamplighter.webhook_deliveries (endpoint_id)
    WHERE status = 'pending';

-- The actors an upload and the periodic fan-outs queue from SQL (lamplighter.enqueue), known from the moment the tables
-- exist; workers and the release step overwrite these rows with the declared options.
INSERT INTO lamplighter.actors (name, queue_name, priority, options)
VALUES ('documents.classify', 'documents', 20, '{"max_retries": 3, "time_limit": 300000}'),
       ('documents.retry_failed', 'documents', 40, '{"max_retries": 3, "time_limit": 300000}'),
       ('documents.cleanup_expired', 'documents', 50, '{"max_retries": 3, "time_limit": 1800000}'),
       ('quotas.check', 'documents', 40, '{"max_retries": 3, "time_limit": 300000}'),
       ('billing.report_usage', 'billing', 30, '{"max_retries": 7, "time_limit": 120000}')
ON CONFLICT (name) DO NOTHING;
