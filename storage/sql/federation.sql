-- OpenID Federation publishing (lamplighter.federation_keys, federation_rotations,
-- federation_documents and the cache row 'federation.published'). Times: lamplighter.now().

-- name: federation_now --
-- The database's clock, which decides iat, exp and when a rotation step is due.
SELECT lamplighter.now() AS now;

-- name: federation_generation_lock --
-- Regenerations one at a time, until the caller's transaction ends: a regeneration that read the
-- keys before a rotation step committed cannot store its version after the step's own one.
-- (A transaction-level lock: it works behind a transaction-mode pooler.)
SELECT pg_advisory_xact_lock(hashtext('lamplighter.federation.regenerate'));

-- name: federation_key_insert --
-- A new key; the partial unique indexes refuse a second active or next key of a set (a
-- concurrent bootstrap inserts nothing and returns no row).
INSERT INTO lamplighter.federation_keys (key_set, kid, alg, public_jwk, private_jwk, state, activated_at)
VALUES (%(key_set)s, %(kid)s, %(alg)s, %(public_jwk)s::jsonb, %(private_jwk)s, %(state)s,
        CASE WHEN %(state)s = 'active' THEN lamplighter.now() END)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: federation_keys_list --
-- Every key, newest first within each set (removed ones included, for `federation keys`).
SELECT key_set, kid, alg, public_jwk, state, created_at, activated_at, retired_at, removed_at
FROM lamplighter.federation_keys
WHERE state <> 'removed' OR %(with_removed)s
ORDER BY key_set, id DESC;

-- name: federation_key_private --
-- The encrypted private JWK of a set's key in the given state (the signing key: 'active').
SELECT kid, alg, private_jwk FROM lamplighter.federation_keys WHERE key_set = %(key_set)s AND state = %(state)s;

-- name: federation_key_promote --
-- The rotation's promotion, one statement: the next key signs, the active one retires.
UPDATE lamplighter.federation_keys
SET state = CASE WHEN state = 'next' THEN 'active' ELSE 'retired' END,
    activated_at = CASE WHEN state = 'next' THEN lamplighter.now() ELSE activated_at END,
    retired_at = CASE WHEN state = 'active' THEN lamplighter.now() ELSE retired_at END
WHERE key_set = %(key_set)s AND ((state = 'next' AND kid = %(new_kid)s) OR (state = 'active' AND kid = %(old_kid)s));

-- name: federation_key_remove --
-- A key leaves the published sets, and its private half is erased.
UPDATE lamplighter.federation_keys
SET state = 'removed', private_jwk = NULL, removed_at = lamplighter.now()
WHERE kid = %(kid)s AND state IN ('next', 'retired');

-- name: federation_rotation_insert --
-- A rotation of a set, its promotion due after the overlap; none when one already runs.
INSERT INTO lamplighter.federation_rotations (key_set, next_step, next_step_at, old_kid, new_kid, started_by)
VALUES (%(key_set)s, 'promote', lamplighter.now() + make_interval(secs => %(overlap)s), %(old_kid)s, %(new_kid)s,
        %(by)s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: federation_rotations_running --
-- The running rotations, for `federation keys` and `federation rotate --abort`.
SELECT id, key_set, status, next_step, next_step_at, old_kid, new_kid, waiting_for, started_by, started_at,
       promoted_at
FROM lamplighter.federation_rotations WHERE status = 'running' ORDER BY key_set;

-- name: federation_rotation_claim_due --
-- One running rotation whose step is due, locked until the step commits (two step jobs never
-- take the same step; a locked one is left to its holder), but none this run already found waiting.
SELECT id, key_set, next_step, old_kid, new_kid
FROM lamplighter.federation_rotations
WHERE status = 'running' AND next_step_at <= lamplighter.now() AND id <> ALL(%(skip)s::bigint[])
ORDER BY next_step_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: federation_rotation_waiting --
-- A due step that cannot be taken yet, and why; tried again by the next step job.
UPDATE lamplighter.federation_rotations SET waiting_for = %(reason)s WHERE id = %(id)s AND status = 'running';

-- name: federation_rotation_promoted --
-- After the promotion: the old key is removed after the second overlap.
UPDATE lamplighter.federation_rotations
SET next_step = 'remove', next_step_at = lamplighter.now() + make_interval(secs => %(overlap)s),
    promoted_at = lamplighter.now(), waiting_for = NULL
WHERE id = %(id)s AND status = 'running';

-- name: federation_rotation_finish --
-- A rotation ends: completed by its last step, or aborted by an operator.
UPDATE lamplighter.federation_rotations
SET status = %(status)s, next_step = NULL, next_step_at = NULL, waiting_for = NULL,
    finished_at = lamplighter.now(), finished_by = %(by)s
WHERE id = %(id)s AND status = 'running'
RETURNING id;

-- name: federation_documents_insert --
-- A new version of the three documents.
INSERT INTO lamplighter.federation_documents (entity_configuration, jwks, signed_jwks, signing_kid, issued_at,
                                              expires_at)
VALUES (%(entity_configuration)s, %(jwks)s::jsonb, %(signed_jwks)s, %(signing_kid)s, to_timestamp(%(iat)s),
        to_timestamp(%(exp)s))
RETURNING version;

-- name: federation_documents_prune --
-- Old versions beyond the newest ones kept (they are public; kept only to see what was served).
DELETE FROM lamplighter.federation_documents
WHERE version < (SELECT max(version) FROM lamplighter.federation_documents) - %(keep)s;

-- name: federation_documents_latest --
-- The newest version's times, to decide whether a refresh must regenerate.
SELECT version, issued_at, expires_at FROM lamplighter.federation_documents ORDER BY version DESC LIMIT 1;

-- name: federation_publish --
-- The newest documents become the published row, under a new publication id (what web processes
-- poll: a process reloads on its next request when it changed) and a generation one more than
-- before (for people). The row lock that ON CONFLICT takes counts concurrent refreshes one each.
INSERT INTO lamplighter.cache AS c (key, value, expires_at, updated_at)
SELECT 'federation.published',
       jsonb_build_object('publication', gen_random_uuid()::text, 'generation', 1, 'version', d.version,
                          'entity_configuration', d.entity_configuration, 'jwks', d.jwks,
                          'signed_jwks', d.signed_jwks, 'issued_at', extract(epoch FROM d.issued_at),
                          'expires_at', extract(epoch FROM d.expires_at)),
       NULL, lamplighter.now()
FROM lamplighter.federation_documents d
ORDER BY d.version DESC
LIMIT 1
ON CONFLICT (key) DO UPDATE
SET value = EXCLUDED.value || jsonb_build_object('generation', coalesce((c.value ->> 'generation')::bigint, 0) + 1),
    expires_at = NULL, updated_at = EXCLUDED.updated_at
RETURNING (value ->> 'generation')::bigint AS generation, (value ->> 'version')::bigint AS version;

-- name: federation_publication --
-- What a web process polls on each request (one look-up on the cache's primary key).
SELECT value ->> 'publication' AS publication FROM lamplighter.cache WHERE key = 'federation.published';

-- name: federation_published --
-- The published documents, read when the generation changed.
SELECT value FROM lamplighter.cache WHERE key = 'federation.published';
