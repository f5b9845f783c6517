"""The web process: health and readiness for now (the console issue adds the dashboard, the
admin API and /metrics). Every response is JSON; unknown paths get a 404 JSON body."""
from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import peewee
import psycopg2
import structlog

from storage import connection, schema
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.web")


class Readiness:
    """`/readyz`: the database answers and no migration is pending.

    A load balancer probes every web process several times a second; the answer is kept for
    ``ttl`` seconds and checked on one connection, not one per request. peewee keeps a connection
    per thread (storage/connection.py) and the server starts a thread per request, so the check
    runs on a single thread of its own, whose connection lasts from check to check; request
    threads wait for that check or read its answer. A connection that fails is closed and
    replaced (see ``_pending``).
    """

    def __init__(self, ttl: float = 1.0, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.checks = 0  # database checks made, for tests and debugging
        self._lock = threading.Lock()
        self._answer: tuple[int, dict] | None = None
        self._checked_at = 0.0
        self._problem: str | None = None  # the last failure logged, so that an outage logs once
        self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readiness")

    def answer(self) -> tuple[int, dict]:
        with self._lock:
            if self._answer is None or self.clock() - self._checked_at >= self.ttl:
                self._answer = self._checker.submit(self._check).result()
                self._checked_at = self.clock()
            return self._answer

    def _check(self) -> tuple[int, dict]:
        self.checks += 1
        try:
            pending = self._pending()
        except Exception as exc:  # any failure to reach or read the database means "not ready"
            # Host, user and database name are for the operator's logs, not for whoever can reach /readyz.
            detail = settings_module.redact_url((str(exc).strip().splitlines() or [type(exc).__name__])[0])
            if detail != self._problem:
                log.warning("readiness_database_unreachable", error=detail)
                self._problem = detail
            return 503, {"status": "unavailable", "error": "database_unreachable", "message": "database unreachable"}
        if self._problem is not None:
            log.info("readiness_database_reachable")
            self._problem = None
        if pending:
            return 503, {"status": "unavailable", "error": "migrations_pending",
                         "message": f"run `lamplighter migrate`; pending: {', '.join(pending)}"}
        return 200, {"status": "ready"}

    def _pending(self) -> list[str]:
        """schema.pending() on this thread's connection. A kept connection that fails (the server
        restarted, an idle connection was dropped) gets one retry on a new connection before the
        database counts as unreachable; a failed connection is closed either way."""
        kept = not connection.database.is_closed()
        try:
            return schema.pending()
        except Exception:
            _close_this_threads_connection()
            if not kept:
                raise
        try:
            return schema.pending()
        except Exception:
            _close_this_threads_connection()
            raise

    def close(self) -> None:
        self._checker.submit(_close_this_threads_connection).result()
        self._checker.shutdown()


def _close_this_threads_connection() -> None:
    try:
        connection.database.close()
    except (peewee.PeeweeException, psycopg2.Error):
        pass  # already broken: closing it was only to make the next check connect afresh


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
            self._send(*self.server.readiness.answer())
        else:
            self._send(404, {"error": "not_found", "message": f"no route for GET {path}"})

    def log_message(self, format, *args):  # route access lines through structlog
        log.info("http_request", request=self.requestline, status=args[1] if len(args) > 1 else None)


class WebServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, readiness: Readiness):
        super().__init__(address, Handler)
        self.readiness = readiness

    def server_close(self) -> None:
        super().server_close()
        self.readiness.close()


def make_server(port: int, *, readiness: Readiness | None = None) -> WebServer:
    connection.init_database("lamplighter-web")
    return WebServer(("0.0.0.0", port), readiness or Readiness())


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
