"""OpenID Federation publishing: the entity configuration, the JWKS and the signed JWKS are built
and signed here (OpenID Federation 1.0; JOSE by joserfc in domain/federation_keys.py), stored by
version in PostgreSQL, and published through the cache table's ``federation.published`` row that
every web process polls. Never built per request.

Plain Python on ports, like domain/retention.py: the file store comes in as a callable (the
actor's ``job_files``), so a store that is missing or down costs only the optional files.
"""
from __future__ import annotations

import json
from typing import Callable, Protocol

import structlog

from domain import federation_keys as keys
from domain.errors import DomainError
from storage import federation as rows
from storage.queries import transaction
from storage.settings import FederationSettings

log = structlog.get_logger("lamplighter.federation")

ENTITY_STATEMENT_TYPE = "entity-statement+jwt"
SIGNED_JWKS_TYPE = "jwk-set+jwt"
WELL_KNOWN = {"entity_configuration": "/.well-known/openid-federation", "jwks": "/.well-known/jwks.json",
              "signed_jwks": "/.well-known/signed-jwks.json"}
# The seed's files (.federation-entity-statement.jwt, .federation-jwks.json), public material only,
# under a folder: the file store refuses hidden names (storage/files.py, validate_key).
FILES = {"entity_configuration": "federation/federation-entity-statement.jwt",
         "jwks": "federation/federation-jwks.json"}


class FederationNotConfigured(DomainError):
    """Settings are missing; the message names them. Retrying cannot help."""

    def __init__(self, missing: list[str]):
        super().__init__(f"federation endpoint not configured: set {', '.join(missing)}")
        self.missing = missing


class FilesNotWritten(Exception):
    """The documents were stored and published, but the optional files were not written; the
    message says which steps were done. ``cause`` is the store's error (an outcome or not)."""

    def __init__(self, message: str, result: dict, cause: BaseException):
        super().__init__(message)
        self.result = result
        self.cause = cause


class Files(Protocol):
    def put(self, key: str, data: bytes): ...


def require_configured(settings: FederationSettings) -> None:
    missing = settings.missing()
    if missing:
        raise FederationNotConfigured(missing)


def entity_metadata(settings: FederationSettings) -> dict:
    """``metadata``: the configured entries, the identity service's entry pointing at the two
    key documents, and a federation_entity entry."""
    metadata = json.loads(settings.metadata)
    service = dict(metadata.get(settings.entity_type, {}))
    service["jwks_uri"] = settings.entity_id + WELL_KNOWN["jwks"]
    service["signed_jwks_uri"] = settings.entity_id + WELL_KNOWN["signed_jwks"]
    metadata[settings.entity_type] = service
    metadata.setdefault("federation_entity", {})
    return metadata


def build_documents(settings: FederationSettings, signer: keys.Signer, published: dict[str, list[dict]],
                    iat: int) -> dict:
    """The three documents, signed by ``signer`` (the active Federation Entity Key)."""
    exp = iat + int(settings.lifetime)
    claims = {"iss": settings.entity_id, "sub": settings.entity_id, "iat": iat, "exp": exp,
              "jwks": {"keys": published["federation"]}, "metadata": entity_metadata(settings)}
    if not settings.trust_anchor:
        claims["authority_hints"] = list(settings.authority_hints)
    jwks = {"keys": published["protocol"]}
    return {
        "entity_configuration": signer.sign({"typ": ENTITY_STATEMENT_TYPE}, claims),
        "jwks": jwks,
        "signed_jwks": signer.sign({"typ": SIGNED_JWKS_TYPE}, {**jwks, "iss": settings.entity_id,
                                                               "sub": settings.entity_id, "iat": iat, "exp": exp}),
        "signing_kid": signer.kid, "iat": iat, "exp": exp,
    }


def regenerate(settings: FederationSettings) -> dict:
    """Build, sign and store a new version of the documents (creating a set's first key when it
    has none); returns what was done, public facts only."""
    return _regenerate(settings)[0]


def _regenerate(settings: FederationSettings) -> tuple[dict, dict]:
    require_configured(settings)
    with transaction():  # keys read and version stored as one, one regeneration at a time
        rows.lock_generation()
        created = keys.ensure_active_keys(settings)
        published = keys.published_keys()
        iat = int(rows.database_now().timestamp())
        documents = build_documents(settings, keys.signer("federation"), published, iat)
        version = rows.insert_documents(**documents)
    log.info("federation_documents_generated", version=version, signing_kid=documents["signing_kid"],
             federation_keys=len(published["federation"]), protocol_keys=len(published["protocol"]),
             created_keys=created)
    return {"version": version, "signing_kid": documents["signing_kid"], "created_keys": created,
            "federation_keys": len(published["federation"]), "protocol_keys": len(published["protocol"]),
            "expires_at": documents["exp"]}, documents


def refresh(settings: FederationSettings) -> dict:
    """Publish the newest documents under a new generation, so every web process reloads them
    on its next request, and read them back (the row a web process loads is ready to serve).
    Regenerates first when there are none, or when the newest will expire within a third of
    its lifetime (the nightly generation failed twice)."""
    require_configured(settings)
    result: dict = {}
    latest = rows.latest_documents()
    now = rows.database_now()
    if latest is None or (latest["expires_at"] - now).total_seconds() < settings.lifetime / 3:
        result["regenerated"] = regenerate(settings)["version"]
    published = rows.publish()
    served = rows.published()
    if served is None or served.get("version") != published["version"]:
        raise RuntimeError("federation: the published row does not hold the documents just published")
    log.info("federation_cache_refreshed", **published)
    return {**result, **published}


def publish(settings: FederationSettings) -> dict:
    """Regenerate and refresh: what each rotation step does (files are the daily job's)."""
    return {"generated": regenerate(settings), "cache": refresh(settings)}


def generate_files(settings: FederationSettings, files: Callable[[], Files] | None = None) -> dict:
    """``federation.generate_files``: regenerate, optionally write the seed's files, then refresh
    the cache. A failed file write does not stop the refresh; it raises :class:`FilesNotWritten`
    afterwards, saying which steps were done."""
    generated, documents = _regenerate(settings)
    result: dict = {"generated": generated}
    failure: BaseException | None = None
    if settings.write_files and files is not None:
        try:
            store = files()
            store.put(FILES["entity_configuration"], documents["entity_configuration"].encode())
            store.put(FILES["jwks"], json.dumps(documents["jwks"], indent=2).encode() + b"\n")
            result["files"] = sorted(FILES.values())
        except Exception as exc:  # any store failure; reported after the refresh below
            failure = exc
            result["files"] = "failed"
    else:
        result["files"] = "skipped"
    result["cache"] = refresh(settings)
    if failure is not None:
        raise FilesNotWritten(f"federation files not written ({failure}); documents version "
                              f"{result['generated']['version']} stored and cache generation "
                              f"{result['cache']['generation']} published", result, failure)
    return result

