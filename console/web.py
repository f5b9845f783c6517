"""The web process: health and readiness for now (the console issue adds the dashboard, the
admin API and /metrics). Every response is JSON; unknown paths get a 404 JSON body."""
from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog

from storage import connection, schema
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.web")


def readiness() -> tuple[int, dict]:
    """200 when the database answers and no migration is pending, else 503 with the reason."""
    try:
        pending = schema.pending()
    except Exception as exc:  # any failure to reach or read the database means "not ready"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return 503, {"status": "unavailable", "error": "database_unreachable",
                     "message": settings_module.redact_url(first)}
    if pending:
        return 503, {"status": "unavailable", "error": "migrations_pending",
                     "message": f"run `lamplighter migrate`; pending: {', '.join(pending)}"}
    return 200, {"status": "ready"}


class Handler(BaseHTTPRequestHandler):
    server_version = "lamplighter"

    def _send(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, {"status": "ok"})
        elif path == "/readyz":
            self._send(*readiness())
        else:
            self._send(404, {"error": "not_found", "message": f"no route for GET {path}"})

    def log_message(self, format, *args):  # route access lines through structlog
        log.info("http_request", request=self.requestline, status=args[1] if len(args) > 1 else None)


def make_server(port: int) -> ThreadingHTTPServer:
    connection.init_database("lamplighter-web")
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    return server


def serve(settings: settings_module.Settings, *, port: int | None = None) -> int:
    server = make_server(settings.port if port is None else port)
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("web_listening", port=server.server_address[1])
    server.serve_forever()
    server.server_close()
    log.info("web_stopped")
    return 0
