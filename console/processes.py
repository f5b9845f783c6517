"""Running Lamplighter's processes: `lamplighter up` (a Procfile runner) and `lamplighter worker`.

`up` runs the release step in-process, then the Procfile's long-running processes as children
with their output prefixed, like foreman or honcho. With DATABASE_URL unset it starts the
embedded PostgreSQL first and hands its URL to the children, and with it the log format it
resolved for itself, so that a terminal shows one readable program, not `up`'s lines readable
and the children's (written to a pipe) as JSON. Ctrl-C or SIGTERM stops the
children gracefully (SIGTERM, then SIGKILL after the shutdown grace), then the embedded server.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import structlog

from console.verbs import config
from storage import connection, embedded
from storage import settings as settings_module

log = structlog.get_logger("lamplighter.up")

# The Procfile's long-running processes, as `lamplighter up` starts them (tests check that
# the Procfile says the same).
PROCESSES = {
    "worker": ["worker"],
    "scheduler": ["scheduler"],
    "web": ["web"],
}


def _lamplighter(*verb: str) -> list[str]:
    return [sys.executable, "-m", "console", *verb]


class Supervisor:
    """Starts children in their own process groups; forwards one stop request to all of them."""

    def __init__(self, grace: float):
        self.grace = grace
        self.children: dict[str, subprocess.Popen] = {}
        self.stop_requested = threading.Event()
        self.pumps: list[threading.Thread] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.children[name] = child
        pump = threading.Thread(target=self._pump, args=(name, child), daemon=True)
        pump.start()
        self.pumps.append(pump)

    def _pump(self, name: str, child: subprocess.Popen) -> None:
        width = max(len(n) for n in PROCESSES)
        for raw in iter(child.stdout.readline, b""):
            sys.stdout.write(f"{name.ljust(width)} | {raw.decode(errors='replace')}")
            sys.stdout.flush()

    def request_stop(self, *_signal) -> None:
        self.stop_requested.set()

    def wait(self) -> int:
        """Until a stop request or a child's exit; then stop everyone. 0 if asked to stop."""
        exit_code = 0
        while not self.stop_requested.wait(0.2):
            dead = [(n, c.returncode) for n, c in self.children.items() if c.poll() is not None]
            if dead:
                name, code = dead[0]
                log.error("process_exited", process=name, exit_code=code)
                exit_code = 1
                break
        self.stop_all()
        return exit_code

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 5
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process_killed", process=name, reason="did not stop within the grace")
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        for pump in self.pumps:
            pump.join(timeout=2)


def _install_handlers(supervisor: Supervisor) -> None:
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)


def release():
    """The release step: check the schedules declared on the actors, migrate, create the audit
    log's partitions for this month and the next ones (domain/audit.py), sync the schedules into
    the schedules table (scheduler/sync.py). A bad declaration raises DeclarationError before
    anything is written. Returns (migrations applied, sync report)."""
    from actors import broker
    from domain import audit
    from scheduler import sync
    from storage import schema

    definitions = sync.definitions_from_broker(broker)
    applied = schema.migrate()
    audit.ensure_partitions()
    report = sync.sync(definitions)
    broker.register_actors()  # SQL enqueue (lamplighter.enqueue) knows them before any worker starts
    return applied, report


def resolved_log_format(log_format: str, stream) -> str:
    """`auto` decided once, by `up`'s own stderr. A child writes to `up`'s pipe, where it would
    decide on JSON: a terminal would show `up`'s lines readable and every child's as JSON.
    (storage/logs.py's configure() makes the same choice for a process on its own.)"""
    if log_format != "auto":
        return log_format
    return "console" if stream.isatty() else "json"


def child_environment(settings: settings_module.Settings, database_url: str, *, stream=None) -> dict[str, str]:
    """The environment `up` starts its children with: the database it resolved (the embedded
    server's URL when DATABASE_URL is unset) and the log format it resolved, so that their lines
    and its own read alike."""
    log_format = resolved_log_format(settings.log_format, sys.stderr if stream is None else stream)
    return settings_module.process_environment(DATABASE_URL=database_url, PYTHONUNBUFFERED="1",
                                               LAMPLIGHTER_LOG_FORMAT=log_format)


def up(settings: settings_module.Settings) -> int:
    # The few settings a newcomer needs; `lamplighter config` lists them all.
    log.info("lamplighter_up", **config.startup_summary(settings))
    url = connection.database_url()  # starts the embedded server when DATABASE_URL is unset
    try:
        release()  # migrations, then the schedules declared on the actors
        env = child_environment(settings, url)
        supervisor = Supervisor(settings.shutdown_grace)
        _install_handlers(supervisor)
        for name, verb in PROCESSES.items():
            supervisor.start(name, _lamplighter(*verb), env)
            log.info("process_started", process=name, pid=supervisor.children[name].pid)
        code = supervisor.wait()
        log.info("lamplighter_stopped", exit_code=code)
        return code
    finally:
        embedded.stop()


def run_worker(settings: settings_module.Settings, *, processes_: int | None, threads: int | None,
               queues: list[str] | None) -> int:
    """`dramatiq actors` with Lamplighter's settings: shape, queues and shutdown grace."""
    url = connection.database_url()
    argv = [sys.executable, "-m", "dramatiq", "actors",
            "--processes", str(processes_ or settings.worker_processes),
            "--threads", str(threads or settings.worker_threads),
            "--skip-logging",
            # dramatiq's default is 600 s; Heroku kills 30 s after SIGTERM.
            "--worker-shutdown-timeout", str(int(settings.shutdown_grace * 1000))]
    chosen = queues or list(settings.queues)
    if chosen:
        argv += ["--queues", *chosen]
    env = settings_module.process_environment(DATABASE_URL=url)
    log.info("worker_command", argv=argv[2:])
    try:
        # Its own session: a terminal's Ctrl-C (or Heroku signalling every process of the dyno)
        # reaches dramatiq once, through us. dramatiq treats a second SIGTERM as "kill now".
        child = subprocess.Popen(argv, env=env, start_new_session=True)
        forwarder = SignalForwarder(child)
        signal.signal(signal.SIGINT, forwarder)
        signal.signal(signal.SIGTERM, forwarder)
        return child.wait()
    finally:
        embedded.stop()


class SignalForwarder:
    """Forward SIGINT/SIGTERM to a child as SIGTERM; repeats within a second are one request."""

    def __init__(self, child: subprocess.Popen, window: float = 1.0):
        self.child = child
        self.window = window
        self.last: float | None = None

    def __call__(self, signum, _frame) -> None:
        now = time.monotonic()
        if self.last is not None and now - self.last < self.window:
            return
        self.last = now
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
