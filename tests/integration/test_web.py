"""The web process answers health and readiness as JSON on a real socket (uvicorn on 127.0.0.1)."""
import io
import json
import socket

import requests

from console import web
from storage import connection, logs
from storage import settings as settings_module
from tests.conftest import use_database, wait_for
from tests.web_api import ApiServer


class _Served:
    """The old server's shutdown()/server_close() pair, over the uvicorn test server."""

    def __init__(self, readiness):
        self.api = ApiServer(web.create_app(readiness=readiness)).start()

    def shutdown(self):
        self.api.stop()

    def server_close(self):
        pass


def _serve(readiness=None):
    served = _Served(readiness)
    return served, served.api.url


def test_ready_when_migrated_and_404_is_json(database_url):
    server, base = _serve()
    try:
        assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(base + "/readyz", timeout=5)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        missing = requests.get(base + "/nope", timeout=5)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    finally:
        server.shutdown()
        server.server_close()


def test_not_ready_when_a_migration_is_pending(database_url, sql):
    sql("DELETE FROM lamplighter.schema_migrations WHERE name = '0001_initial'")
    server, base = _serve()
    try:
        ready = requests.get(base + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["error"] == "migrations_pending"
        assert "0001_initial" in ready.json()["message"]
    finally:
        server.shutdown()
        server.server_close()
        connection.reset()


class Clock:
    """Readiness's clock, moved by the test: "within a second" without sleeping or racing one."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _backends(sql):
    """Client connections to this test's database, other than the test's own."""
    return sorted(pid for (pid,) in sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"))


def test_readiness_is_checked_once_a_second_on_one_connection(database_url, sql):
    clock = Clock()
    readiness = web.Readiness(clock=clock)
    server, base = _serve(readiness)
    try:
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
        clock.now += 0.9
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
        assert readiness.checks == 1
        [checking] = _backends(sql)

        clock.now += 0.1  # a second after the first check
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
        assert readiness.checks == 2
        assert _backends(sql) == [checking]  # checked again on the same connection
    finally:
        server.shutdown()
        server.server_close()
    wait_for(lambda: _backends(sql) == [], message="the readiness connection closed with the server")


def test_a_dropped_readiness_connection_is_replaced_without_a_503(database_url, sql):
    clock = Clock()
    server, base = _serve(web.Readiness(clock=clock))
    try:
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
        [dropped] = _backends(sql)
        sql("SELECT pg_terminate_backend(%s)", (dropped,))
        wait_for(lambda: dropped not in _backends(sql), message="the readiness connection terminated")

        clock.now += 1
        ready = requests.get(base + "/readyz", timeout=5)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert len(_backends(sql)) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_database_is_503_naming_no_host_user_or_database():
    previous = settings_module.get()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    try:
        use_database(f"postgresql://readyz_user:readyz_secret@127.0.0.1:{port}/readyz_db")
        readiness = web.Readiness(clock=Clock())
        server, base = _serve(readiness)
        try:
            unready = requests.get(base + "/readyz", timeout=15)
            again = requests.get(base + "/readyz", timeout=15)
        finally:
            server.shutdown()
            server.server_close()
    finally:
        closed.close()
        logs.configure(log_format="json", level="INFO")
        connection.reset()
        settings_module.configure(previous)
    assert unready.status_code == 503
    assert unready.json() == {"status": "unavailable", "error": "database_unreachable",
                              "message": "database unreachable"}
    for detail in ("127.0.0.1", str(port), "readyz_user", "readyz_db", "readyz_secret"):
        assert detail not in unready.text
    assert (again.status_code, again.text, readiness.checks) == (503, unready.text, 1)
    # The operator's log has the detail, once, at WARNING, without the password.
    [warning] = [json.loads(line) for line in stream.getvalue().splitlines()
                 if "readiness_database_unreachable" in line]
    assert warning["level"] == "warning"
    assert f"port {port}" in warning["error"] and "127.0.0.1" in warning["error"]
    assert "readyz_secret" not in stream.getvalue()
