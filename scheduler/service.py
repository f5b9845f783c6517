"""The `scheduler` process. Until the scheduler issue lands it declares no schedules: it only
stays up so the Procfile's process set is complete, and stops cleanly on SIGTERM."""
from __future__ import annotations

import signal
import threading

import structlog

from storage import settings as settings_module

log = structlog.get_logger("lamplighter.scheduler")


def run(settings: settings_module.Settings) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("scheduler_started", schedules=0)
    stop.wait()
    log.info("scheduler_stopped")
    return 0
