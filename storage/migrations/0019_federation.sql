-- OpenID Federation publishing (issue 19): keys, rotations, documents. The published documents
-- are served from the cache table's 'federation.published' row (storage/sql/federation.sql).

-- ---- keys -----------------------------------------------------------------------------------
-- Two sets kept apart: 'federation' keys sign the entity configuration and the signed JWKS;
-- 'protocol' keys are the identity service's, published in jwks.json and signed-jwks.json.
-- kid is the RFC 7638 thumbprint of the public key. private_jwk holds the private JWK encrypted
-- by storage/encryption.py (enc:v1:...), and nothing once the key is removed.
--   next (published, not signing) --promote--> active (signs) --promote of its successor-->
--   retired (published, unused) --after the overlap--> removed (unpublished, private half erased)
CREATE TABLE IF NOT EXISTS lamplighter.federation_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_set       text NOT NULL CHECK (key_set IN ('federation', 'protocol')),
    kid           text NOT NULL UNIQUE CHECK (kid ~ '^[A-Za-z0-9_-]{43}$'),
    alg           text NOT NULL CHECK (alg IN ('ES256', 'RS256', 'PS256')),
    public_jwk    jsonb NOT NULL CHECK (jsonb_typeof(public_jwk) = 'object' AND NOT public_jwk ? 'd'),
    private_jwk   text CHECK (private_jwk LIKE 'enc:v1:%'),
    state         text NOT NULL CHECK (state IN ('next', 'active', 'retired', 'removed')),
    created_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    activated_at  timestamptz,
    retired_at    timestamptz,
    removed_at    timestamptz,
    CHECK ((state = 'removed') = (private_jwk IS NULL)),
    CHECK ((state = 'removed') = (removed_at IS NOT NULL))
);
-- One signing key and at most one successor per set, whoever writes.
CREATE UNIQUE INDEX IF NOT EXISTS federation_keys_active_idx ON lamplighter.federation_keys (key_set)
    WHERE state = 'active';
CREATE UNIQUE INDEX IF NOT EXISTS federation_keys_next_idx ON lamplighter.federation_keys (key_set)
    WHERE state = 'next';

-- ---- rotations ------------------------------------------------------------------------------
-- One running rotation per set; federation.advance_rotations takes the step when next_step_at
-- has come (promote: the next key signs and the old one retires; remove: the retired key goes).
-- waiting_for: why a due step has not been taken (the superior does not list the key yet).
CREATE TABLE IF NOT EXISTS lamplighter.federation_rotations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_set       text NOT NULL CHECK (key_set IN ('federation', 'protocol')),
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'aborted')),
    next_step     text CHECK (next_step IN ('promote', 'remove')),
    next_step_at  timestamptz,
    old_kid       text NOT NULL,
    new_kid       text NOT NULL,
    waiting_for   text,
    started_by    text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT lamplighter.now(),
    promoted_at   timestamptz,
    finished_at   timestamptz,
    finished_by   text,
    CHECK ((status = 'running') = (next_step IS NOT NULL AND next_step_at IS NOT NULL)),
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS federation_rotations_running_idx ON lamplighter.federation_rotations (key_set)
    WHERE status = 'running';

-- ---- documents ------------------------------------------------------------------------------
-- Each generation of the three documents, by version; the newest is the one published. Only
-- public material: the JWTs and the JWKS.
CREATE TABLE IF NOT EXISTS lamplighter.federation_documents (
    version               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_configuration  text NOT NULL,
    jwks                  jsonb NOT NULL CHECK (jsonb_typeof(jwks -> 'keys') = 'array'),
    signed_jwks           text NOT NULL,
    signing_kid           text NOT NULL,
    issued_at             timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL CHECK (expires_at > issued_at),
    created_at            timestamptz NOT NULL DEFAULT lamplighter.now()
);
