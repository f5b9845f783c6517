-- Signed webhooks (lamplighter.webhook_endpoints, webhook_events, webhook_deliveries; migration
-- 0015). Secrets are stored encrypted (storage/encryption.py) and decrypted only to sign. Every
-- query is scoped to one tenant; a delivery's event and endpoint are its tenant's by foreign key.

-- name: webhook_endpoint_insert --
INSERT INTO lamplighter.webhook_endpoints (tenant_id, url, secret, event_types, legacy_signature)
VALUES (%(tenant_id)s, %(url)s, %(secret)s, %(event_types)s, %(legacy_signature)s)
RETURNING *;

-- name: webhook_endpoint_list --
SELECT * FROM lamplighter.webhook_endpoints
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY tenant_id, id;

-- name: webhook_endpoint_rotate_secret --
-- A new secret; the one it replaces still signs (beside it) until previous_secret_expires_at.
UPDATE lamplighter.webhook_endpoints
SET previous_secret = secret, previous_secret_expires_at = lamplighter.now() + make_interval(secs => %(overlap_seconds)s),
    secret = %(secret)s, updated_at = lamplighter.now()
WHERE id = %(id)s AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING *;

-- name: webhook_endpoint_enable --
UPDATE lamplighter.webhook_endpoints
SET enabled = true, disabled_at = NULL, disabled_reason = NULL, updated_at = lamplighter.now()
WHERE id = %(id)s AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING *;

-- name: webhook_endpoint_disable --
-- Disable an enabled endpoint and cancel its pending deliveries (their queued jobs then find
-- nothing to send); no row: already disabled, or not this tenant's.
WITH disabled AS (
    UPDATE lamplighter.webhook_endpoints
    SET enabled = false, disabled_at = lamplighter.now(), disabled_reason = %(reason)s, updated_at = lamplighter.now()
    WHERE id = %(id)s AND enabled AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
    RETURNING id, tenant_id, url, disabled_at
), cancelled AS (
    UPDATE lamplighter.webhook_deliveries d
    SET status = 'cancelled', last_error = 'endpoint disabled: ' || %(reason)s, next_attempt_at = NULL
    FROM disabled
    WHERE d.endpoint_id = disabled.id AND d.tenant_id = disabled.tenant_id AND d.status = 'pending'
    RETURNING d.id
)
SELECT disabled.id, disabled.tenant_id, disabled.url, disabled.disabled_at,
       (SELECT count(*) FROM cancelled) AS cancelled
FROM disabled;

-- name: webhook_event_publish --
-- Events of the tenant (one per payload of the JSON array) and one pending delivery of each to
-- every enabled endpoint of the tenant that takes the type; events no endpoint takes are not
-- recorded (nothing would read them). One statement for a whole batch.
WITH targets AS (
    SELECT e.id FROM lamplighter.webhook_endpoints e
    WHERE (%(every_tenant)s OR e.tenant_id = %(tenant_id)s) AND e.enabled
      AND (e.event_types = '{}' OR %(event_type)s = ANY (e.event_types))
), events AS (
    INSERT INTO lamplighter.webhook_events (tenant_id, event_type, payload)
    SELECT %(tenant_id)s, %(event_type)s, p.value
    FROM jsonb_array_elements(%(payloads)s::jsonb) WITH ORDINALITY AS p (value, n)
    WHERE EXISTS (SELECT 1 FROM targets)
    ORDER BY p.n
    RETURNING id
)
INSERT INTO lamplighter.webhook_deliveries (tenant_id, event_id, endpoint_id)
SELECT %(tenant_id)s, events.id, targets.id FROM events, targets
ORDER BY events.id, targets.id
RETURNING id, endpoint_id;

-- name: webhook_delivery_begin_attempt --
-- Count an attempt of a pending delivery (committed before the call) and read what it sends:
-- the endpoint's URL and secrets, the event.
WITH attempt AS (
    UPDATE lamplighter.webhook_deliveries
    SET attempts = attempts + 1, last_attempt_at = lamplighter.now(), next_attempt_at = NULL
    WHERE id = %(id)s AND status = 'pending' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
    RETURNING id, tenant_id, event_id, endpoint_id, attempts
)
SELECT a.id, a.tenant_id, a.event_id, a.endpoint_id, a.attempts, e.url, e.enabled, e.secret, e.legacy_signature,
       CASE WHEN e.previous_secret_expires_at > lamplighter.now() THEN e.previous_secret END AS previous_secret,
       ev.event_type, ev.payload, ev.created_at AS event_created_at, lamplighter.now() AS now
FROM attempt a
JOIN lamplighter.webhook_endpoints e ON e.id = a.endpoint_id AND e.tenant_id = a.tenant_id
JOIN lamplighter.webhook_events ev ON ev.id = a.event_id AND ev.tenant_id = a.tenant_id;

-- name: webhook_delivery_record --
-- An attempt's end: delivered, still pending (next_attempt_at set), failed or cancelled.
UPDATE lamplighter.webhook_deliveries
SET status = %(status)s, response_code = %(response_code)s, last_error = %(error)s,
    next_attempt_at = %(next_attempt_at)s,
    delivered_at = CASE WHEN %(status)s = 'delivered' THEN lamplighter.now() END
WHERE id = %(id)s AND status = 'pending' AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
RETURNING id;

-- name: webhook_delivery_list --
SELECT d.*, ev.event_type FROM lamplighter.webhook_deliveries d
JOIN lamplighter.webhook_events ev ON ev.id = d.event_id AND ev.tenant_id = d.tenant_id
WHERE (%(every_tenant)s OR d.tenant_id = %(tenant_id)s)
  AND (%(status)s::text IS NULL OR d.status = %(status)s)
ORDER BY d.id DESC
LIMIT %(limit)s;
