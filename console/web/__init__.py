"""The web process (`lamplighter web`): FastAPI on uvicorn. app.py builds the app, server.py
serves it; health.py, auth.py and one module per API noun (enqueue, jobs, queues, schedules,
audit) hold the routes."""
from console.web.app import create_app
from console.web.health import Readiness
from console.web.server import serve

__all__ = ["Readiness", "create_app", "serve"]
