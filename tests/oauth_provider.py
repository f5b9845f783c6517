"""A cloud provider on 127.0.0.1 (pytest-httpserver) for the integration tests: an OAuth 2.0 token
endpoint (RFC 6749 §6 refresh, §5.2 errors), a userinfo endpoint and a paged files API, with
scripted answers for the failure paths. The only fake in those tests: the provider lives outside
this machine in production."""
from __future__ import annotations

import base64
import json
import threading
from urllib.parse import unquote_plus

import pytest
from cryptography.fernet import Fernet
from werkzeug import Response

from domain import integrations, tenants, users
from domain.integrations import TokenResponse
from storage import encryption
from tests.conftest import LOOPBACK, use_database

CLIENT_ID = "lamplighter-client"
CLIENT_SECRET = "client-secret-never-logged"
FIRST_ACCESS = "at-first-never-logged"
FIRST_REFRESH = "rt-first-never-logged"


def answer(status: int, body: dict | None = None, headers: dict | None = None) -> Response:
    return Response(json.dumps(body or {}), status=status, headers=headers or {}, content_type="application/json")


class FakeProvider:
    """``token_script`` / ``userinfo_script``: answers given to the next calls instead of the normal
    behaviour. ``rotate``: a refresh returns a new refresh token; ``expires_in`` None leaves it out.
    ``hold``: while set to a threading.Event, a token call waits for it (``entered`` tells that
    one is waiting). ``files``: id -> metadata, listed by id, ``cursor`` = offset."""

    def __init__(self, server):
        self.server = server
        self.lock = threading.Lock()
        self.token_requests: list[dict] = []
        self.token_script: list[Response] = []
        self.userinfo_script: list[Response] = []
        self.files_script: dict[str, list[Response]] = {}
        self.files_requests: list[dict] = []
        self.rotate = True
        self.expires_in: int | None = 3600
        self.issued = 0
        self.valid_access = {FIRST_ACCESS}
        self.valid_refresh = {FIRST_REFRESH}
        self.files: dict[str, dict] = {}
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        server.expect_request("/oauth/token", method="POST").respond_with_handler(self.token)
        server.expect_request("/userinfo", method="GET").respond_with_handler(self.userinfo)
        server.expect_request("/files", method="GET").respond_with_handler(self.list_files)

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def token(self, request):
        with self.lock:
            self.token_requests.append({"headers": dict(request.headers), "form": request.form.to_dict()})
        if self.hold is not None:
            self.entered.set()
            self.hold.wait(30)
        with self.lock:
            if self.token_script:
                return self.token_script.pop(0)
            if request.form.get("grant_type") != "refresh_token":
                return answer(400, {"error": "unsupported_grant_type"})
            if request.form.get("refresh_token") not in self.valid_refresh:
                return answer(400, {"error": "invalid_grant", "error_description": "unknown refresh token"})
            self.issued += 1
            access = f"at-{self.issued}-never-logged"
            self.valid_access.add(access)
            body = {"access_token": access, "token_type": "Bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            if self.rotate:
                self.valid_refresh.discard(request.form["refresh_token"])
                body["refresh_token"] = f"rt-{self.issued}-never-logged"
                self.valid_refresh.add(body["refresh_token"])
            return answer(200, body)

    def userinfo(self, request):
        with self.lock:
            if self.userinfo_script:
                return self.userinfo_script.pop(0)
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if bearer not in self.valid_access:
                return answer(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return answer(200, {"sub": "user-1", "email": "owner@acme.example"})

    def list_files(self, request):
        cursor = request.args.get("cursor", "")
        with self.lock:
            self.files_requests.append({"cursor": cursor, "page_size": request.args.get("page_size")})
            scripted = self.files_script.get(cursor)
            if scripted:
                return scripted.pop(0)
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                return answer(401, {"error": "invalid_token"})
            size = int(request.args.get("page_size", "100"))
            start = int(cursor or 0)
            ids = sorted(self.files)[start:start + size]
            more = start + size < len(self.files)
            return answer(200, {"files": [self.files[i] for i in ids],
                                "next_cursor": str(start + size) if more else None})

    def add_files(self, count: int, *, prefix: str = "f") -> None:
        for n in range(count):
            file_id = f"{prefix}{n:05d}"
            self.files[file_id] = {"id": file_id, "name": f"{file_id}.txt", "path": f"/docs/{file_id}.txt",
                                   "size": n, "mime_type": "text/plain", "modified_at": "2026-11-30T10:00:00Z"}

    def basic_credentials(self, request: dict) -> tuple[str, str] | None:
        header = request["headers"].get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return unquote_plus(client_id), unquote_plus(secret)


@pytest.fixture
def provider(httpserver):
    fake = FakeProvider(httpserver)
    yield fake
    if fake.hold is not None:
        fake.hold.set()


@pytest.fixture
def configured(database_url, httpserver):
    """This test's settings: a fresh encryption key, loopback allowed for outbound calls."""
    settings = use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=f"t1:{Fernet.generate_key().decode()}",
                            LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    encryption.reset()
    yield settings
    encryption.reset()


@pytest.fixture
def acme(configured, provider, broker):
    """Tenant acme with an owner (a tenant superadmin) and the fake saved as provider "fake"."""
    broker.settings = configured
    tenants.create_tenant("acme", "Acme", by="tests")
    users.create_user(email="owner@acme.example", display_name="Owner", role="superadmin", password=None,
                      tenant_id="acme", by="tests")
    save_provider(provider)
    return configured


def save_provider(fake: FakeProvider, *, name: str = "fake", method: str = "client_secret_basic"):
    return integrations.save_provider(name=name, token_url=fake.url("/oauth/token"), userinfo_url=fake.url("/userinfo"),
                                      files_url=fake.url("/files"), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                      client_auth_method=method, by="tests")


def connect(settings, *, expires_in: float | None = 3600, name: str = "default", provider: str = "fake",
            access: str = FIRST_ACCESS, refresh: str | None = FIRST_REFRESH, owner: str | None = None):
    from actors.integrations import JOBS

    return integrations.connect(tenant_id="acme", provider=provider, name=name, owner=owner, jobs=JOBS,
                                tokens=TokenResponse(access_token=access, refresh_token=refresh, expires_in=expires_in),
                                settings=settings.integrations, by="tests")
