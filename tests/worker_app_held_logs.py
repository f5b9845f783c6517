"""tests.worker_app with a log writer that holds its batches for an hour: a per-job line
reaches the worker's output only when something flushes it (tests/acceptance/test_shutdown.py)."""
from storage import logs

logs.BATCH_INTERVAL_S = 3600

from tests.worker_app import *  # noqa: E402,F401,F403
