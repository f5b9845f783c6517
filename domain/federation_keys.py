"""The two key sets of OpenID Federation publishing, with joserfc doing all the JOSE.

* ``federation``: Federation Entity Keys. The active one signs the entity configuration and the
  signed JWKS; the public halves of next, active and retired ones are the entity
  configuration's ``jwks`` claim.
* ``protocol``: the identity service's signing keys, published in ``/.well-known/jwks.json`` and,
  signed by the Federation Entity Key, in ``/.well-known/signed-jwks.json``.

Each key's ``kid`` is its RFC 7638 thumbprint. The private JWK is encrypted with
storage/encryption.py before it is stored and decrypted only to sign (or to hand the identity
service its key); it never reaches a log line, an exception, a job's arguments or its result.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from storage import encryption
from storage import federation as rows
from storage.settings import FederationSettings

EC_CURVE = "P-256"


def _generate(alg: str, rsa_bits: int):
    from joserfc.jwk import ECKey, RSAKey

    parameters = {"use": "sig", "alg": alg}
    if alg == "ES256":
        return ECKey.generate_key(EC_CURVE, parameters=parameters, private=True)
    return RSAKey.generate_key(rsa_bits, parameters=parameters, private=True)


def public_jwk(key) -> dict:
    """The public JWK as published: the key's public parameters, ``use``, ``alg`` and ``kid``
    (its RFC 7638 thumbprint)."""
    jwk = key.as_dict(private=False)
    jwk["kid"] = key.thumbprint()
    return jwk


def create_key(key_set: str, settings: FederationSettings, *, state: str) -> str | None:
    """Generate a key of ``settings.key_alg`` and store it in ``state``; its kid, or None when
    the set already has a key in that state (a concurrent bootstrap won)."""
    if key_set not in rows.KEY_SETS:
        raise ValueError(f"unknown key set {key_set!r}")
    key = _generate(settings.key_alg, settings.rsa_bits)
    published = public_jwk(key)
    sealed = encryption.keyring().encrypt(json.dumps(key.as_dict(private=True)))
    del key  # the clear private key lives no longer than this call
    stored = rows.insert_key(key_set=key_set, kid=published["kid"], alg=settings.key_alg, public_jwk=published,
                             private_jwk=sealed, state=state)
    return published["kid"] if stored else None


def _import(sealed: str):
    from joserfc.jwk import JWKRegistry

    return JWKRegistry.import_key(json.loads(encryption.keyring().decrypt(sealed)))


def ensure_active_keys(settings: FederationSettings) -> list[str]:
    """A first active key for each set that has none; the sets it created one for."""
    present = {k.key_set for k in rows.keys() if k.state == "active"}
    return [key_set for key_set in rows.KEY_SETS
            if key_set not in present and create_key(key_set, settings, state="active")]


@dataclass(frozen=True)
class Signer:
    """The active key of a set, able to sign a JWT; its repr shows the kid only."""

    kid: str
    alg: str
    _sealed: str

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r}, alg={self.alg!r})"

    def sign(self, header: dict, claims: dict) -> str:
        from joserfc import jwt

        return jwt.encode({**header, "alg": self.alg, "kid": self.kid}, claims, _import(self._sealed),
                          algorithms=[self.alg])


def signer(key_set: str = "federation") -> Signer:
    """The set's active key as a :class:`Signer` (the identity service signs with
    ``signer("protocol")``)."""
    stored = rows.private_key(key_set, "active")
    if stored is None:
        raise LookupError(f"no active {key_set} key")
    return Signer(kid=stored.kid, alg=stored.alg, _sealed=stored.private_jwk)


def published_keys() -> dict[str, list[dict]]:
    """The public JWKs each set publishes (next, active and retired keys), in a stable order."""
    published: dict[str, list[dict]] = {key_set: [] for key_set in rows.KEY_SETS}
    for key in sorted(rows.keys(), key=lambda k: (k.key_set, k.created_at, k.kid)):
        if key.state in rows.PUBLISHED_STATES:
            published[key.key_set].append(key.public_jwk)
    return published
