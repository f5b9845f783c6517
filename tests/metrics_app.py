"""A web app serving only console.metrics.router, run by uvicorn in a subprocess by
tests/integration/test_metrics.py (settings and database from the environment)."""
from fastapi import FastAPI

from console import metrics

app = FastAPI()
app.include_router(metrics.router)
