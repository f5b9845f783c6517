-- Cloud providers and integrations (lamplighter.cloud_providers, lamplighter.integrations,
-- lamplighter.integration_files; migration 0018). Times come from lamplighter.now(): a row read
-- for a decision carries the database's "now" with it, so Python never compares with its own.
-- Token columns hold enc:v1: values; storage/integrations.py encrypts before and decrypts after.

-- name: provider_upsert --
-- Add a provider, or change one by its name (a new client secret, new endpoints).
INSERT INTO lamplighter.cloud_providers
    (name, token_url, userinfo_url, files_url, client_id, client_secret, client_auth_method)
VALUES (%(name)s, %(token_url)s, %(userinfo_url)s, %(files_url)s, %(client_id)s, %(client_secret)s,
        %(client_auth_method)s)
ON CONFLICT (name) DO UPDATE SET
    token_url = EXCLUDED.token_url, userinfo_url = EXCLUDED.userinfo_url, files_url = EXCLUDED.files_url,
    client_id = EXCLUDED.client_id, client_secret = EXCLUDED.client_secret,
    client_auth_method = EXCLUDED.client_auth_method, updated_at = lamplighter.now()
RETURNING *;

-- name: provider_get --
SELECT * FROM lamplighter.cloud_providers WHERE id = %(id)s;

-- name: provider_get_by_name --
SELECT * FROM lamplighter.cloud_providers WHERE name = %(name)s;

-- name: provider_list --
SELECT * FROM lamplighter.cloud_providers ORDER BY name;

-- name: integration_connect --
-- Store a tenant's tokens for a provider: a new integration, or the same one (tenant, provider,
-- name) connected again, active, with a new generation (its owner may be told again).
INSERT INTO lamplighter.integrations AS i
    (tenant_id, provider_id, name, owner_user_id, access_token, refresh_token, expires_at)
VALUES (%(tenant_id)s, %(provider_id)s, %(name)s, %(owner_user_id)s, %(access_token)s, %(refresh_token)s,
        lamplighter.now() + make_interval(secs => %(lifetime)s))
ON CONFLICT (tenant_id, provider_id, name) DO UPDATE SET
    owner_user_id = coalesce(EXCLUDED.owner_user_id, i.owner_user_id), access_token = EXCLUDED.access_token,
    refresh_token = EXCLUDED.refresh_token, expires_at = EXCLUDED.expires_at, status = 'active',
    status_message = NULL, generation = i.generation + 1, connected_at = lamplighter.now(),
    refresh_failed_at = NULL, updated_at = lamplighter.now()
RETURNING *, lamplighter.now() AS now;

-- name: integration_get --
-- One integration by id, for the job that acts on it (its id is the job's argument).
SELECT i.*, lamplighter.now() AS now FROM lamplighter.integrations i WHERE i.id = %(id)s;

-- name: integration_get_scoped --
-- One integration as an operator or a tenant may see it.
SELECT i.*, lamplighter.now() AS now FROM lamplighter.integrations i
WHERE i.id = %(id)s AND (%(every_tenant)s OR i.tenant_id = %(tenant_id)s);

-- name: integration_list --
-- Integrations with their provider's name and indexed file count, newest first.
SELECT i.*, lamplighter.now() AS now, p.name AS provider_name,
       (SELECT count(*) FROM lamplighter.integration_files f WHERE f.integration_id = i.id) AS files
FROM lamplighter.integrations i JOIN lamplighter.cloud_providers p ON p.id = i.provider_id
WHERE (%(every_tenant)s OR i.tenant_id = %(tenant_id)s)
  AND (%(status)s::text IS NULL OR i.status = %(status)s)
ORDER BY i.id DESC
LIMIT %(limit)s;

-- name: integration_store_refreshed --
-- A refresh's new tokens, stored only if the row still holds the access token the refresh
-- started from (a reconnect or another refresh meanwhile wins); no refresh token in the answer
-- keeps the old one (RFC 6749 §6).
UPDATE lamplighter.integrations
SET access_token = %(access_token)s, refresh_token = coalesce(%(refresh_token)s, refresh_token),
    expires_at = lamplighter.now() + make_interval(secs => %(lifetime)s), status = 'active', status_message = NULL,
    last_refreshed_at = lamplighter.now(), refresh_failed_at = NULL, updated_at = lamplighter.now()
WHERE id = %(id)s AND access_token = %(seen_access_token)s AND status IN ('active', 'expired')
RETURNING *, lamplighter.now() AS now;

-- name: integration_record_refresh_failure --
-- A refresh that will be tried again: recorded; the integration stays active until its access
-- token has really expired.
UPDATE lamplighter.integrations
SET refresh_failed_at = lamplighter.now(), status_message = %(message)s,
    status = CASE WHEN status = 'active' AND expires_at <= lamplighter.now() THEN 'expired' ELSE status END,
    updated_at = lamplighter.now()
WHERE id = %(id)s AND generation = %(generation)s
RETURNING *, lamplighter.now() AS now;

-- name: integration_give_up --
-- The provider refused for good: the new status, and no refresh token kept (it will not work
-- again). Only for the connection the decision was made on: a reconnect meanwhile stays.
UPDATE lamplighter.integrations
SET status = %(status)s, status_message = %(message)s,
    refresh_token = CASE WHEN %(drop_refresh_token)s THEN NULL ELSE refresh_token END,
    updated_at = lamplighter.now()
WHERE id = %(id)s AND generation = %(generation)s AND status IN ('active', 'expired')
RETURNING *, lamplighter.now() AS now;

-- name: integration_record_health --
-- A health check's result; message NULL: healthy.
UPDATE lamplighter.integrations
SET last_health_check_at = lamplighter.now(), status_message = %(message)s, updated_at = lamplighter.now()
WHERE id = %(id)s;

-- name: integration_active_ids --
-- One page of active integrations by id, after the last page's last id (the sweeps).
SELECT id FROM lamplighter.integrations
WHERE status = 'active' AND id > %(after)s
ORDER BY id
LIMIT %(limit)s;

-- name: integration_files_upsert --
-- One page of the provider's listing, seen in this pass.
INSERT INTO lamplighter.integration_files AS f
    (integration_id, provider_file_id, name, path, size_bytes, mime_type, modified_at, seen_pass)
SELECT %(integration_id)s, x.id, x.name, x.path, x.size, x.mime_type, x.modified_at, %(pass)s
FROM jsonb_to_recordset(%(files)s::jsonb)
     AS x(id text, name text, path text, size bigint, mime_type text, modified_at timestamptz)
ON CONFLICT (integration_id, provider_file_id) DO UPDATE SET
    name = EXCLUDED.name, path = EXCLUDED.path, size_bytes = EXCLUDED.size_bytes, mime_type = EXCLUDED.mime_type,
    modified_at = EXCLUDED.modified_at, seen_pass = EXCLUDED.seen_pass, indexed_at = lamplighter.now();

-- name: integration_index_advance --
-- Where the pass stands: the next page's cursor (stored with the page, so a run resumes there).
UPDATE lamplighter.integrations SET index_pass = %(pass)s, index_cursor = %(cursor)s, updated_at = lamplighter.now()
WHERE id = %(id)s;

-- name: integration_files_delete_unseen --
-- One bounded batch of files a finished pass did not see: gone at the provider.
DELETE FROM lamplighter.integration_files
WHERE (integration_id, provider_file_id) IN (
    SELECT integration_id, provider_file_id FROM lamplighter.integration_files
    WHERE integration_id = %(integration_id)s AND seen_pass < %(pass)s
    LIMIT %(batch_size)s);

-- name: integration_index_finish --
-- A pass is complete: between passes again.
UPDATE lamplighter.integrations
SET index_pass = %(pass)s, index_cursor = NULL, last_indexed_at = lamplighter.now(), updated_at = lamplighter.now()
WHERE id = %(id)s;

-- name: integration_files_list --
-- An integration's indexed files by path (operators' view; the tenant scope is its integration's).
SELECT f.* FROM lamplighter.integration_files f
JOIN lamplighter.integrations i ON i.id = f.integration_id
WHERE f.integration_id = %(integration_id)s AND (%(every_tenant)s OR i.tenant_id = %(tenant_id)s)
ORDER BY f.path, f.provider_file_id
LIMIT %(limit)s;
