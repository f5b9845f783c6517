-- Tenants (lamplighter.tenants). The table's id is the tenant: it has no tenant_id column, and
-- every tenant's row is every platform operator's to read. Their billing status means what
-- domain/tenants.py says it means.

-- name: tenant_insert --
-- A new tenant, active; nothing when the id is taken.
INSERT INTO lamplighter.tenants (id, name)
VALUES (%(id)s, %(name)s)
ON CONFLICT (id) DO NOTHING
RETURNING id, name, billing_status, grace_period_ends_at, created_at, updated_at;

-- name: tenant_get --
SELECT id, name, billing_status, grace_period_ends_at, created_at, updated_at
FROM lamplighter.tenants
WHERE id = %(id)s;

-- name: tenant_list --
SELECT id, name, billing_status, grace_period_ends_at, created_at, updated_at
FROM lamplighter.tenants
ORDER BY id;

-- name: tenant_set_status --
-- A new billing status (and the end of its grace period, for grace), with the status it
-- replaced, for the audit row.
WITH previous AS (
    SELECT id, billing_status, grace_period_ends_at
    FROM lamplighter.tenants
    WHERE id = %(id)s
    FOR UPDATE
)
UPDATE lamplighter.tenants t
SET billing_status = %(status)s, grace_period_ends_at = %(grace_period_ends_at)s, updated_at = lamplighter.now()
FROM previous
WHERE t.id = previous.id
RETURNING t.id, t.name, t.billing_status, t.grace_period_ends_at, t.created_at, t.updated_at,
          previous.billing_status AS previous_status, previous.grace_period_ends_at AS previous_grace_period_ends_at;

-- name: tenant_list_overdue --
-- Tenants in grace whose grace period has ended (by the database's clock).
SELECT id, name, billing_status, grace_period_ends_at, created_at, updated_at
FROM lamplighter.tenants
WHERE billing_status = 'grace' AND grace_period_ends_at <= lamplighter.now()
ORDER BY id;

-- name: tenant_lock_if_overdue --
-- The tenant, locked for this transaction, if it is still in a grace period that has ended (an
-- operator may have changed its status since the list was read).
SELECT id, name, billing_status, grace_period_ends_at, created_at, updated_at
FROM lamplighter.tenants
WHERE id = %(id)s AND billing_status = 'grace' AND grace_period_ends_at <= lamplighter.now()
FOR UPDATE;
