"""The web app on a real uvicorn on 127.0.0.1 (a thread of the test process, on the test's
database), with API tokens of any scope; and `lamplighter web` as a subprocess for tests that
signal it. Fixtures registered for every test by tests/conftest.py (``pytest_plugins``)."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import uvicorn

from tests.conftest import ROOT, lamplighter_env, wait_for


class ApiServer:
    def __init__(self, app=None):
        from console.web import create_app, server
        from storage import settings as settings_module

        settings = settings_module.get()
        self.app = app or create_app(settings)
        self.sock = server.bind(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(server.config(settings, self.app))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.session = requests.Session()

    def start(self) -> "ApiServer":
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20, message="uvicorn started")
        return self

    def stop(self) -> None:
        self.session.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def token(self, *scopes: str, role: str | None = None, tenant: str | None = None, **limits) -> str:
        """A new API token with these scopes (or a role's), optionally bound to a tenant."""
        from domain import scopes as scope_rules
        from domain import tokens

        chosen = scope_rules.ROLES[role] if role else scopes
        return tokens.create_token(name="tests", scope_names=chosen, tenant_id=tenant, by="tests", **limits).secret

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def api(database_url):
    """The web app on uvicorn on 127.0.0.1 over this test's database; stopped at teardown."""
    server = ApiServer().start()
    yield server
    server.stop()


class WebProcess:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def web_process(database_url, tmp_path):
    """Starts `lamplighter web` on a free port over this test's database; killed at teardown if
    still running."""
    started: list[WebProcess] = []

    def start(**env: str) -> WebProcess:
        from console.web.server import bind

        probe = bind(0, "127.0.0.1")
        port = probe.getsockname()[1]
        probe.close()
        log = tmp_path / f"web-{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "console", "web", "--port", str(port)], cwd=ROOT,
                                    env=lamplighter_env(DATABASE_URL=database_url, **env), stdout=out,
                                    stderr=subprocess.STDOUT)
        web = WebProcess(proc, port, log)
        started.append(web)

        def ready():
            assert proc.poll() is None, f"lamplighter web exited:\n{web.log_text()[-3000:]}"
            try:
                return requests.get(web.url + "/readyz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout=30, message="lamplighter web ready")
        return web

    yield start
    for web in started:
        if web.proc.poll() is None:
            web.proc.kill()
            web.proc.wait(timeout=10)
