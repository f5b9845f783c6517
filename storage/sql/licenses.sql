-- Licenses and subscriptions (lamplighter.licenses). Times come from lamplighter.now().

-- name: license_insert --
-- A tenant's new license.
INSERT INTO lamplighter.licenses (tenant_id, plan, seats, expires_at)
VALUES (%(tenant_id)s, %(plan)s, %(seats)s, %(expires_at)s)
RETURNING id, tenant_id, plan, seats, seats_used, expires_at, status;

-- name: license_expire_due --
-- Active licenses past expires_at become expired; returns them, with the database's now.
UPDATE lamplighter.licenses
SET status = 'expired', updated_at = lamplighter.now()
WHERE status = 'active' AND expires_at <= lamplighter.now()
RETURNING id, tenant_id, plan, expires_at;

-- name: license_count_seats --
-- Every active license with the seats in use now (the tenant's enabled users), recorded in
-- seats_used; returned with the tenant's name and the database's now.
UPDATE lamplighter.licenses l
SET seats_used = u.used
FROM (SELECT l2.id, (SELECT count(*) FROM lamplighter.users u
                     WHERE u.tenant_id = l2.tenant_id AND u.disabled_at IS NULL)::integer AS used
      FROM lamplighter.licenses l2 WHERE l2.status = 'active') u,
     lamplighter.tenants t
WHERE l.id = u.id AND t.id = l.tenant_id
RETURNING l.id, l.tenant_id, t.name AS tenant_name, l.plan, l.seats, l.seats_used, l.expires_at,
          lamplighter.now() AS now;

-- name: license_list --
-- Licenses of the scope, by expiry.
SELECT id, tenant_id, plan, seats, seats_used, expires_at, status
FROM lamplighter.licenses
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY expires_at, id;
