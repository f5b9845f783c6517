-- Cloud integrations (issue 21): the providers a tenant may connect, each tenant's integrations
-- with their OAuth 2.0 tokens, and the file metadata indexed from the providers. Secrets (client
-- secrets, access and refresh tokens) are enc:v1: values from storage/encryption.py, never plain.

-- ---- providers ------------------------------------------------------------------------------
-- client_auth_method: how the client authenticates at the token endpoint (RFC 6749 §2.3.1):
-- HTTP Basic (every server must support it, the default) or the form body where configured.
CREATE TABLE IF NOT EXISTS lamplighter.cloud_providers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    token_url           text NOT NULL CHECK (token_url ~ '^https?://'),
    userinfo_url        text NOT NULL CHECK (userinfo_url ~ '^https?://'),
    files_url           text NOT NULL CHECK (files_url ~ '^https?://'),
    client_id           text NOT NULL CHECK (btrim(client_id) <> ''),
    client_secret       text NOT NULL CHECK (client_secret LIKE 'enc:v1:%'),
    client_auth_method  text NOT NULL DEFAULT 'client_secret_basic'
                        CHECK (client_auth_method IN ('client_secret_basic', 'client_secret_post')),
    created_at          timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at          timestamptz NOT NULL DEFAULT lamplighter.now()
);

-- ---- integrations ---------------------------------------------------------------------------
--   active --refresh refused (invalid_grant)--> expired
--   active --refresh refused (invalid_client, unauthorized_client), or 401 after a failed refresh--> revoked
--   active --token endpoint answers nonsense (not OAuth)--> error
--   any --connect again--> active (generation + 1: the owner may be told again)
-- owner_user_id: who is told when it breaks (NULL: the tenant's owners). generation counts
-- connections, so "told once" is once per connection (the outbox's dedupe key holds it).
-- refresh_failed_at: the last refresh attempt failed (retryably) after last_refreshed_at.
-- index_pass / index_cursor: the file index's current pass and where it stands in the provider's
-- listing (NULL: between passes); files not seen in a finished pass are gone at the provider.
CREATE TABLE IF NOT EXISTS lamplighter.integrations (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             text NOT NULL REFERENCES lamplighter.tenants (id),
    provider_id           bigint NOT NULL REFERENCES lamplighter.cloud_providers (id),
    name                  text NOT NULL DEFAULT 'default' CHECK (btrim(name) <> ''),
    owner_user_id         bigint REFERENCES lamplighter.users (id) ON DELETE SET NULL,
    access_token          text NOT NULL CHECK (access_token LIKE 'enc:v1:%'),
    refresh_token         text CHECK (refresh_token LIKE 'enc:v1:%'),
    expires_at            timestamptz NOT NULL,
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'revoked', 'error')),
    status_message        text,
    generation            integer NOT NULL DEFAULT 1,
    connected_at          timestamptz NOT NULL DEFAULT lamplighter.now(),
    last_refreshed_at     timestamptz,
    refresh_failed_at     timestamptz,
    last_health_check_at  timestamptz,
    last_indexed_at       timestamptz,
    index_pass            bigint NOT NULL DEFAULT 0,
    index_cursor          text,
    created_at            timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at            timestamptz NOT NULL DEFAULT lamplighter.now(),
    UNIQUE (tenant_id, provider_id, name)
);
-- The 4-hourly and 6-hourly sweeps walk the active integrations by id.
CREATE INDEX IF NOT EXISTS integrations_active_idx ON lamplighter.integrations (id) WHERE status = 'active';

-- ---- indexed files --------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS lamplighter.integration_files (
    integration_id    bigint NOT NULL REFERENCES lamplighter.integrations (id) ON DELETE CASCADE,
    provider_file_id  text NOT NULL,
    name              text NOT NULL,
    path              text NOT NULL,
    size_bytes        bigint,
    mime_type         text,
    modified_at       timestamptz,
    seen_pass         bigint NOT NULL,
    indexed_at        timestamptz NOT NULL DEFAULT lamplighter.now(),
    PRIMARY KEY (integration_id, provider_file_id)
);
-- The end of a pass deletes what it did not see: (integration, older pass).
CREATE INDEX IF NOT EXISTS integration_files_pass_idx ON lamplighter.integration_files (integration_id, seen_pass);
