"""The federation's `/.well-known/*` endpoints, as a FastAPI router for the web app:

    GET /.well-known/openid-federation  application/entity-statement+jwt  (the entity configuration)
    GET /.well-known/jwks.json          application/json                  (the protocol keys)
    GET /.well-known/signed-jwks.json   application/jwk-set+jwt           (the same, signed)

Served from the documents published in the cache table, never built per request. Each request
asks the database for the publication id (one primary-key look-up, which works behind a
transaction-mode pooler); the documents are reloaded only when it changed. ``Cache-Control``
max-age is the configured ceiling but always below the statement's remaining lifetime; ``ETag``
is the body's SHA-256, and ``If-None-Match`` gets a 304. Not configured, or nothing published
yet: 503 with a JSON reason. The database unreachable: the documents this process holds, if any.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from domain.federation import WELL_KNOWN
from storage import connection
from storage import federation as federation_rows
from storage import settings as settings_module
from storage.clock import SystemClock

log = structlog.get_logger("lamplighter.web")
router = APIRouter()

CONTENT_TYPES = {"entity_configuration": "application/entity-statement+jwt", "jwks": "application/json",
                 "signed_jwks": "application/jwk-set+jwt"}


@dataclass(frozen=True)
class Snapshot:
    """One publication, ready to serve: name -> (body, ETag)."""

    publication: str
    generation: int
    expires_at: float
    bodies: dict[str, tuple[bytes, str]]


class PublishedDocuments:
    """This process's copy of the published documents, replaced whole when the publication id
    the database holds changes.

    The polls run on one connection of its own, under a lock: a poll is a primary-key read of a
    fraction of a millisecond, and a connection per request thread (peewee's way) would take up
    to the thread pool's size of the server's connections from every web process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conn = None
        self._problem: str | None = None  # the failure logged, so that an outage logs once
        self.snapshot: Snapshot | None = None
        self.reloads = 0

    def current(self) -> Snapshot | None:
        with self._lock:
            try:
                publication = self._query(federation_rows.publication)
                if publication is not None and (self.snapshot is None or publication != self.snapshot.publication):
                    self.snapshot = self._snapshot(self._query(federation_rows.published))
                    self.reloads += 1
            except Exception as exc:  # the database is unreachable: serve what this process holds
                if self._problem is None:
                    log.warning("federation_documents_unreadable", error=type(exc).__name__,
                                serving="held documents" if self.snapshot else "503")
                    self._problem = type(exc).__name__
                if self.snapshot is None:
                    raise
                return self.snapshot
            if self._problem is not None:
                log.info("federation_documents_readable")
                self._problem = None
            return self.snapshot if publication is not None else None

    def _query(self, read):
        """``read`` on the poll connection. A kept connection that fails (the server restarted,
        an idle connection was dropped) gets one retry on a new one; a failed one is closed."""
        for attempt in (1, 2):
            kept = self._conn is not None and not self._conn.closed
            if not kept:
                self._conn = connection.raw_connection("federation")
                self._conn.autocommit = True
            try:
                return read(conn=self._conn)
            except Exception:
                self._conn.close()
                if not kept or attempt == 2:
                    raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    @staticmethod
    def _snapshot(value: dict) -> Snapshot:
        bodies = {"entity_configuration": value["entity_configuration"].encode(),
                  "jwks": json.dumps(value["jwks"], separators=(",", ":")).encode(),
                  "signed_jwks": value["signed_jwks"].encode()}
        return Snapshot(publication=value["publication"], generation=value["generation"],
                        expires_at=float(value["expires_at"]),
                        bodies={name: (body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
                                for name, body in bodies.items()})


published = PublishedDocuments()


def _unavailable(error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=503, headers={"Cache-Control": "no-store"})


def serve(name: str, request: Request) -> Response:
    current = settings_module.get()
    missing = current.federation.missing()
    if missing:
        return _unavailable("federation_not_configured", f"federation endpoint not configured: set {', '.join(missing)}")
    try:
        documents = published.current()
    except Exception as exc:  # nothing held and the database unreachable
        log.warning("federation_documents_unavailable", error=type(exc).__name__)
        return _unavailable("database_unreachable", "federation documents unavailable: database unreachable")
    if documents is None:
        return _unavailable("federation_not_published", "nothing published yet: federation.generate_files publishes")
    body, etag = documents.bodies[name]
    remaining = documents.expires_at - SystemClock(current.clock_offset).timestamp()
    max_age = int(min(current.federation.max_age, remaining - 1))
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}" if max_age > 0 else "no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=CONTENT_TYPES[name], headers=headers)


@router.get(WELL_KNOWN["entity_configuration"], include_in_schema=False)
def entity_configuration(request: Request) -> Response:
    return serve("entity_configuration", request)


@router.get(WELL_KNOWN["jwks"], include_in_schema=False)
def jwks(request: Request) -> Response:
    return serve("jwks", request)


@router.get(WELL_KNOWN["signed_jwks"], include_in_schema=False)
def signed_jwks(request: Request) -> Response:
    return serve("signed_jwks", request)
