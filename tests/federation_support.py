"""Helpers for the federation tests: the router served by uvicorn on 127.0.0.1 (a minimal FastAPI
app, the way the web app includes it), an independent RFC 7638 thumbprint, and PyJWT checks of
the served JWTs (a different JOSE library than joserfc, which signed them)."""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from contextlib import contextmanager

import jwt as pyjwt
import requests
import uvicorn
from fastapi import FastAPI

from tests.conftest import use_database, wait_for

ENTITY_ID = "https://op.example.org"
SUPERIOR = "https://ta.example.org"
# A fixed test key: with DATABASE_URL set, storage/encryption.py requires one.
ENCRYPTION_KEYS = "fed1:" + base64.urlsafe_b64encode(b"lamplighter federation tests 32b").decode()
FEDERATION_ENV = {"LAMPLIGHTER_FEDERATION_ENTITY_ID": ENTITY_ID, "LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS": SUPERIOR,
                  "LAMPLIGHTER_FEDERATION_METADATA": '{"openid_provider": {"issuer": "https://op.example.org"}}',
                  "LAMPLIGHTER_ENCRYPTION_KEYS": ENCRYPTION_KEYS}


def federation_database(url: str, *, base: dict | None = None, **extra: str):
    """use_database with the federation settings (``base``, FEDERATION_ENV by default) and a fresh keyring."""
    from storage import encryption

    encryption.reset()
    return use_database(url, **{**(FEDERATION_ENV if base is None else base), **extra})


def app() -> FastAPI:
    from console.federation_web import router

    application = FastAPI()
    application.include_router(router)
    return application


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served():
    """The router on a real HTTP server on 127.0.0.1; yields its base URL. The process's copy of
    the documents starts empty, as in a web process just started."""
    from console import federation_web

    federation_web.published = federation_web.PublishedDocuments()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, message="uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        federation_web.published.close()


def thumbprint(jwk: dict) -> str:
    """RFC 7638, written out here so the test does not take the signer's word for it."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def verify_with_pyjwt(token: str, jwks: list[dict], *, typ: str, issuer: str = ENTITY_ID,
                      now: int | None = None) -> tuple[dict, dict]:
    """(header, claims), verified by PyJWT against the key the header's kid names in ``jwks``;
    ``iat`` and ``exp`` against ``now`` when given (a moved database clock), else the real time."""
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == typ
    [jwk] = [k for k in jwks if k["kid"] == header["kid"]]
    assert thumbprint(jwk) == header["kid"] and "d" not in jwk
    key = pyjwt.PyJWK(jwk)
    moved = {"verify_iat": False, "verify_exp": False} if now is not None else {}
    claims = pyjwt.decode(token, key.key, algorithms=[header["alg"]], issuer=issuer,
                          options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False, **moved})
    assert claims["sub"] == issuer
    if now is not None:
        assert claims["iat"] <= now + 5 < claims["exp"]
    return header, claims


def fetch_all(base: str) -> dict[str, requests.Response]:
    return {name: requests.get(base + path, timeout=5) for name, path in
            (("entity_configuration", "/.well-known/openid-federation"), ("jwks", "/.well-known/jwks.json"),
             ("signed_jwks", "/.well-known/signed-jwks.json"))}


def served_documents(base: str, now: int | None = None) -> dict:
    """The three documents as served, verified: entity configuration and signed JWKS with PyJWT."""
    got = fetch_all(base)
    assert {name: r.status_code for name, r in got.items()} == dict.fromkeys(got, 200)
    header, claims = _entity(got["entity_configuration"].text, now)
    jwks = got["jwks"].json()
    signed_header, signed = verify_with_pyjwt(got["signed_jwks"].text, claims["jwks"]["keys"], typ="jwk-set+jwt",
                                              now=now)
    return {"header": header, "claims": claims, "jwks": jwks, "signed_header": signed_header, "signed": signed,
            "responses": got}


def _entity(token: str, now: int | None) -> tuple[dict, dict]:
    """A self-signed entity configuration: verified with the key of its own jwks its kid names."""
    unverified = pyjwt.decode(token, options={"verify_signature": False})
    return verify_with_pyjwt(token, unverified["jwks"]["keys"], typ="entity-statement+jwt", now=now)


def kids(keys: list[dict]) -> set[str]:
    return {k["kid"] for k in keys}
