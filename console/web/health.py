"""`/healthz` (the process answers) and `/readyz` (the database answers and no migration is
pending), for load balancers and the platform's health checks."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import peewee
import psycopg2
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from storage import connection, schema
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.web")


class Readiness:
    """`/readyz`: the database answers and no migration is pending.

    A load balancer probes every web process several times a second; the answer is kept for
    ``ttl`` seconds and checked on one connection, not one per request, apart from the request
    pool's (console/web/pool.py): peewee keeps a connection per thread (storage/connection.py),
    so the check runs on a single thread of its own, whose connection lasts from check to check;
    requests wait for that check or read its answer. A connection that fails is closed and
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


router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process answers", responses={200: {"description": "Alive"}})
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and no migration is pending",
            responses={200: {"description": "Ready"}, 503: {"description": "Not ready"}})
async def readyz(request: Request):
    readiness: Readiness = request.app.state.readiness
    # The check may wait on the database: off the event loop, on a thread of anyio's.

    status, body = await anyio.to_thread.run_sync(readiness.answer)
    return JSONResponse(body, status_code=status)
