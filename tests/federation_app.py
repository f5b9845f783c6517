"""A minimal web app serving console/federation_web.py's router, for tests that start it as its own
process (`python -m uvicorn tests.federation_app:app`), the way the web app includes it."""
from tests.federation_support import app as build

app = build()
