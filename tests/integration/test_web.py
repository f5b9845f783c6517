"""The web process answers health and readiness as JSON on a real socket."""
import threading

import requests

from console import web
from storage import connection


def _serve():
    server = web.make_server(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


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
