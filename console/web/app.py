"""The web process's ASGI app: health, the HTTP API under /api (OpenAPI at /api/openapi.json,
docs at /api/docs), and the routers other areas add.

Adding a router is one line in :data:`ROUTERS` (or one ``app.include_router`` in
:func:`create_app` for a router built at start-up).
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from console import federation_web, metrics
from console.web import audit, enqueue, errors, health, jobs, queues, schedules
from console.web.pool import DatabasePool
from storage import settings as settings_module

ROUTERS = [
    health.router,
    enqueue.router,
    jobs.router,
    queues.router,
    schedules.router,
    audit.router,
    metrics.router,  # /metrics: Prometheus exposition from the database (its own read-scope check)
    federation_web.router,  # OpenID Federation's /.well-known/* (README "Federation")
    # The dashboard: one line, here.
]

DESCRIPTION = """Enqueue Lamplighter's actors, read jobs and their attempts, and operate queues,
schedules and jobs. Every /api route takes `Authorization: Bearer llt_...` (an API token from
`lamplighter tokens create`); every error is JSON `{"error": code, "message": ...}`."""


def create_app(settings: settings_module.Settings | None = None, *, readiness: health.Readiness | None = None,
               pool: DatabasePool | None = None) -> FastAPI:
    settings = settings or settings_module.get()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.pool.close()
        app.state.readiness.close()

    app = FastAPI(title="Lamplighter", version="1", description=DESCRIPTION, openapi_url="/api/openapi.json",
                  docs_url="/api/docs", redoc_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.readiness = readiness or health.Readiness()
    app.state.pool = pool or DatabasePool(settings.web.pool_size, settings.web.pool_timeout)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    from console.dashboard.routes import router as dashboard  # here: the dashboard imports console.web's modules

    app.include_router(dashboard)  # /dashboard: the operator dashboard (console/dashboard/)
    # Outermost last: the access log sees every answer, the 413s of the body limit included.
    app.add_middleware(errors.RefuseNul)
    app.add_middleware(errors.BodyLimit, max_bytes=settings.web.max_body_bytes)
    app.add_middleware(errors.AccessLog)
    return app
