"""Checking what is served, as a verifier would: `lamplighter federation verify`, and the
superior's Subordinate Statement that a new Federation Entity Key must be in before it signs.

HTTP comes in as a port, ``fetch(url) -> Fetched``; the actor and the CLI wire
actors/outbound.py in. JOSE is joserfc's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from domain import federation as publishing
from domain import federation_keys as keys
from domain.errors import DomainError
from storage.settings import FederationSettings

CLOCK_SKEW = 60  # seconds a verifier's clock may differ from ours
CONTENT_TYPES = {"entity_configuration": "application/entity-statement+jwt", "jwks": "application/json",
                 "signed_jwks": "application/jwk-set+jwt"}
ALGORITHMS = ["ES256", "RS256", "PS256"]


class VerificationFailed(DomainError):
    """What is served (or what the superior says) is not what it should be; the message says why."""


@dataclass(frozen=True)
class Fetched:
    status: int
    content_type: str
    body: bytes


Fetch = Callable[[str], Fetched]


def verified_jwt(token: str, jwks: list[dict], *, typ: str, what: str) -> tuple[dict, dict]:
    """(header, claims) of ``token`` once its ``typ`` is right and its signature verifies with the
    key its ``kid`` names in ``jwks``; VerificationFailed otherwise."""
    from joserfc import jws, jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry

    try:
        header = jws.extract_compact(token.strip().encode()).headers()
    except (JoseError, ValueError) as exc:
        raise VerificationFailed(f"{what}: not a compact JWS ({exc})") from None
    if header.get("typ") != typ:
        raise VerificationFailed(f"{what}: typ is {header.get('typ')!r}, expected {typ!r}")
    named = [k for k in jwks if k.get("kid") == header.get("kid")]
    if not named:
        raise VerificationFailed(f"{what}: signed with kid {header.get('kid')!r}, which is not among the keys "
                                 f"{sorted(k.get('kid') for k in jwks)}")
    key = JWKRegistry.import_key(named[0])
    if key.thumbprint() != header["kid"]:
        raise VerificationFailed(f"{what}: kid {header['kid']!r} is not the RFC 7638 thumbprint of its key")
    try:
        decoded = jwt.decode(token.strip(), key, algorithms=ALGORITHMS)
    except JoseError as exc:
        raise VerificationFailed(f"{what}: signature does not verify with kid {header['kid']!r} ({exc})") from None
    return decoded.header, decoded.claims


def _own_keys(token: str) -> list[dict]:
    """The ``jwks`` claim of a self-signed entity configuration, read before its signature is
    checked with one of them ([] when unreadable: the verification then says what is wrong)."""
    import json

    from joserfc import jws

    try:
        keys_claim = json.loads(jws.extract_compact(token.strip().encode()).payload).get("jwks", {}).get("keys", [])
    except Exception:  # malformed token or claims
        return []
    return keys_claim if isinstance(keys_claim, list) else []


def _check_times(claims: dict, now: int, what: str, *, exp_required: bool = True) -> None:
    if not isinstance(claims.get("iat"), int) or claims["iat"] > now + CLOCK_SKEW:
        raise VerificationFailed(f"{what}: iat {claims.get('iat')!r} is missing or in the future")
    if exp_required and (not isinstance(claims.get("exp"), int) or claims["exp"] <= now):
        raise VerificationFailed(f"{what}: expired or no exp (exp {claims.get('exp')!r}, now {now})")


def _fetch_ok(fetch: Fetch, url: str, what: str, content_type: str | None = None) -> bytes:
    got = fetch(url)
    if got.status != 200:
        raise VerificationFailed(f"{what}: HTTP {got.status} from {url}")
    if content_type and got.content_type.split(";")[0].strip() != content_type:
        raise VerificationFailed(f"{what}: content type {got.content_type!r}, expected {content_type!r}")
    return got.body


def superior_kids(fetch: Fetch, anchor_url: str, entity_id: str, now: int) -> set[str]:
    """The kids the superior's Subordinate Statement about ``entity_id`` lists: its entity
    configuration (self-signed) names its fetch endpoint, whose statement it signed."""
    anchor = anchor_url.rstrip("/")
    body = _fetch_ok(fetch, anchor + publishing.WELL_KNOWN["entity_configuration"], "superior's entity configuration")
    token = body.decode(errors="replace")
    _, claims = verified_jwt(token, _own_keys(token), typ=publishing.ENTITY_STATEMENT_TYPE,
                             what="superior's entity configuration")
    _check_times(claims, now, "superior's entity configuration")
    endpoint = claims.get("metadata", {}).get("federation_entity", {}).get("federation_fetch_endpoint")
    if not endpoint:
        raise VerificationFailed("superior's entity configuration names no federation_fetch_endpoint")
    statement = _fetch_ok(fetch, f"{endpoint}?sub={quote(entity_id, safe='')}", "superior's subordinate statement")
    _, about = verified_jwt(statement.decode(errors="replace"), claims["jwks"]["keys"],
                            typ=publishing.ENTITY_STATEMENT_TYPE, what="superior's subordinate statement")
    _check_times(about, now, "superior's subordinate statement")
    if about.get("sub") != entity_id or about.get("iss") != claims.get("iss"):
        raise VerificationFailed(f"superior's subordinate statement is about {about.get('sub')!r} from "
                                 f"{about.get('iss')!r}, not about {entity_id!r} from {claims.get('iss')!r}")
    return {_thumbprint(k) for k in about.get("jwks", {}).get("keys", [])} - {None}


def _thumbprint(jwk: dict) -> str | None:
    """The key's RFC 7638 thumbprint (what our kids are), whatever kid the statement gives it."""
    from joserfc.jwk import JWKRegistry

    try:
        return JWKRegistry.import_key(jwk).thumbprint()
    except Exception:  # not a key we could use: it lists nothing
        return None


def verify_served(settings: FederationSettings, fetch: Fetch, base_url: str, now: int) -> list[str]:
    """Fetch the three documents from ``base_url`` and check them against the keys the database
    says are published; the checks passed, or VerificationFailed with the first problem."""
    import json

    publishing.require_configured(settings)
    expected = keys.published_keys()
    try:
        active = keys.signer("federation").kid
    except LookupError:
        raise VerificationFailed("no active Federation Entity Key: nothing generated yet "
                                 "(federation.generate_files creates the first)") from None
    base = base_url.rstrip("/")
    passed = []
    bodies = {name: _fetch_ok(fetch, base + path, path, CONTENT_TYPES[name])
              for name, path in publishing.WELL_KNOWN.items()}
    statement = bodies["entity_configuration"].decode(errors="replace")
    own = _own_keys(statement)
    header, claims = verified_jwt(statement, own, typ=publishing.ENTITY_STATEMENT_TYPE, what="entity configuration")
    _check_times(claims, now, "entity configuration")
    if claims.get("iss") != settings.entity_id or claims.get("sub") != settings.entity_id:
        raise VerificationFailed(f"entity configuration: iss/sub {claims.get('iss')!r}/{claims.get('sub')!r}, "
                                 f"expected {settings.entity_id!r}")
    _same_keys(own, expected["federation"], "entity configuration jwks")
    if header["kid"] != active:
        raise VerificationFailed(f"entity configuration: signed with {header['kid']!r}, the active Federation "
                                 f"Entity Key is {active!r}")
    service = claims.get("metadata", {}).get(settings.entity_type, {})
    for name in ("jwks", "signed_jwks"):
        if service.get(f"{name}_uri") != settings.entity_id + publishing.WELL_KNOWN[name]:
            raise VerificationFailed(f"entity configuration: metadata.{settings.entity_type}.{name}_uri is "
                                     f"{service.get(f'{name}_uri')!r}")
    if not settings.trust_anchor and claims.get("authority_hints") != list(settings.authority_hints):
        raise VerificationFailed(f"entity configuration: authority_hints {claims.get('authority_hints')!r}")
    passed.append(f"entity configuration: signed by {active}, exp in {claims['exp'] - now} s, "
                  f"{len(own)} federation key(s)")
    jwks = json.loads(bodies["jwks"])
    _same_keys(jwks.get("keys", []), expected["protocol"], "jwks.json")
    passed.append(f"jwks.json: {len(jwks['keys'])} protocol key(s)")
    header, signed = verified_jwt(bodies["signed_jwks"].decode(errors="replace"), own, typ=publishing.SIGNED_JWKS_TYPE,
                                  what="signed JWKS")
    _check_times(signed, now, "signed JWKS")
    if signed.get("iss") != settings.entity_id or signed.get("sub") != settings.entity_id:
        raise VerificationFailed("signed JWKS: iss/sub are not the entity identifier")
    if header["kid"] != active or signed.get("keys") != jwks["keys"]:
        raise VerificationFailed("signed JWKS: not signed by the active key, or its keys differ from jwks.json")
    passed.append(f"signed JWKS: signed by {active}, same keys as jwks.json")
    if settings.trust_anchor_url:
        listed = superior_kids(fetch, settings.trust_anchor_url, settings.entity_id, now)
        if active not in listed:
            raise VerificationFailed(f"superior {settings.trust_anchor_url}: its subordinate statement does not list "
                                     f"the active Federation Entity Key {active}")
        passed.append(f"superior {settings.trust_anchor_url} lists {active}")
    return passed


def _same_keys(served: list[dict], expected: list[dict], what: str) -> None:
    served_kids = {k.get("kid") for k in served}
    missing = [k["kid"] for k in expected if k["kid"] not in served_kids]
    extra = sorted(served_kids - {k["kid"] for k in expected}, key=str)
    if missing:
        raise VerificationFailed(f"{what}: key(s) {', '.join(missing)} missing")
    if extra:
        raise VerificationFailed(f"{what}: unexpected key(s) {', '.join(map(str, extra))}")
    from joserfc.jwk import JWKRegistry

    for jwk in served:
        if "d" in jwk or JWKRegistry.import_key(jwk).thumbprint() != jwk["kid"]:
            raise VerificationFailed(f"{what}: key {jwk['kid']} is private or its kid is not its thumbprint")
