-- Users (lamplighter.users): people who sign in to the dashboard. A user's tenant_id is NULL for
-- platform users. Reads and changes take a tenant scope (storage/tenants.py): a tenant's admin
-- sees and changes only that tenant's users. password_hash leaves this file only towards
-- domain/passwords.py's verification.

-- name: user_insert --
-- A new user; nothing when the e-mail address is taken (case-insensitively).
INSERT INTO lamplighter.users (email, display_name, password_hash, role, tenant_id)
VALUES (%(email)s, %(display_name)s, %(password_hash)s, %(role)s, %(tenant_id)s)
ON CONFLICT ((lower(email))) DO NOTHING
RETURNING id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at,
          password_hash;

-- name: user_get --
SELECT id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at, password_hash
FROM lamplighter.users
WHERE id = %(id)s
  AND (%(every_tenant)s OR tenant_id = %(tenant_id)s);

-- name: user_get_by_email --
SELECT id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at, password_hash
FROM lamplighter.users
WHERE email_key = lower(%(email)s)  -- email_key: lower(email), indexed (migration 0023)
  AND (%(every_tenant)s OR tenant_id = %(tenant_id)s);

-- name: user_find_for_login --
-- Sign-in looks the address up before anyone is known, so before any tenant is.
SELECT id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at, password_hash
FROM lamplighter.users
WHERE email_key = lower(%(email)s);  -- email_key: lower(email), indexed (migration 0023)

-- name: user_list --
SELECT id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at, password_hash
FROM lamplighter.users
WHERE (%(every_tenant)s OR tenant_id = %(tenant_id)s)
ORDER BY id;

-- name: user_disable --
-- Disabled now (kept as it was if already disabled), and signed out of every session.
WITH disabled AS (
    UPDATE lamplighter.users
    SET disabled_at = coalesce(disabled_at, lamplighter.now()), updated_at = lamplighter.now()
    WHERE id = %(id)s
      AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
    RETURNING id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at,
              password_hash
), signed_out AS (
    DELETE FROM lamplighter.sessions s USING disabled WHERE s.user_id = disabled.id
)
SELECT * FROM disabled;

-- name: user_set_password_hash --
-- A new password: every session of the user ends with the old one.
WITH changed AS (
    UPDATE lamplighter.users
    SET password_hash = %(password_hash)s, updated_at = lamplighter.now()
    WHERE id = %(id)s
      AND (%(every_tenant)s OR tenant_id = %(tenant_id)s)
    RETURNING id, email, display_name, role, tenant_id, disabled_at, last_login_at, created_at, updated_at,
              password_hash
), signed_out AS (
    DELETE FROM lamplighter.sessions s USING changed WHERE s.user_id = changed.id
)
SELECT * FROM changed;

-- name: user_record_login --
-- A successful sign-in of the user the sign-in itself found; a hash made with stronger
-- parameters replaces the old one (NULL: unchanged).
UPDATE lamplighter.users
SET last_login_at = lamplighter.now(), password_hash = coalesce(%(password_hash)s, password_hash)
WHERE id = %(id)s;
