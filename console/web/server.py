"""`lamplighter web`: the app on uvicorn, on $PORT.

On SIGTERM (or SIGINT) uvicorn stops accepting connections and lets requests in flight finish,
for up to ``LAMPLIGHTER_WEB_SHUTDOWN_TIMEOUT`` seconds (25: the platform kills at 30); then the
pool's connections close. Its own access log is off: console/web/errors.py's AccessLog writes
one structlog event per request, and uvicorn's other lines go through the same handlers
(``log_config=None`` leaves the logging that storage/logs.py configured alone).
"""
from __future__ import annotations

import signal
import socket

import structlog
import uvicorn

from console.web.app import create_app
from storage import connection
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.web")


def config(settings: settings_module.Settings, app=None) -> uvicorn.Config:
    return uvicorn.Config(app or create_app(settings), access_log=False, log_config=None, lifespan="on",
                          timeout_graceful_shutdown=settings.web.shutdown_timeout, server_header=False)


def bind(port: int, host: str = "0.0.0.0") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(settings: settings_module.Settings, *, port: int | None = None) -> int:
    connection.set_process_kind("web")
    connection.init_database()
    sock = bind(settings.port if port is None else port)
    server = uvicorn.Server(config(settings))
    # uvicorn handles SIGTERM while it serves, then sends the signal again to the handler it found
    # installed: a no-op one makes a graceful stop exit 0, as the platform expects.
    signal.signal(signal.SIGTERM, lambda *_: None)
    log.info("web_listening", port=sock.getsockname()[1], pool_size=settings.web.pool_size)
    server.run(sockets=[sock])
    log.info("web_stopped")
    return 0
