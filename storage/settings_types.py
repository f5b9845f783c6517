"""The settings sections (a dataclass per area: database, smtp, alerts, reports, operations,
integrations, web, federation, documents, billing, webhooks), apart from storage/settings.py so that the
`Settings` module stays readable. storage/settings_sections.py reads each from the environment;
storage/settings.py re-exports them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SmtpSettings:
    """E-mail for the notification outbox, from LAMPLIGHTER_SMTP_URL and LAMPLIGHTER_SMTP_FROM.

    ``smtp://user:password@host:port`` speaks STARTTLS and refuses a server that does not offer
    it; ``?starttls=0`` sends in the clear (a relay on the same host or network); ``smtps://``
    is TLS from the first byte (implicit TLS, port 465 by default). User and password are
    percent-decoded."""

    url: str = ""  # shown with its password masked
    from_address: str = ""
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    implicit_tls: bool = False
    starttls: bool = True

    @property
    def configured(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class AlertSettings:
    """Who hears about alerts (domain/alerts.py): e-mail recipients as kind:value
    (LAMPLIGHTER_ALERT_RECIPIENTS, default role:superadmin) and, optionally, a webhook."""

    recipients: tuple[str, ...] = ("role:superadmin",)
    webhook_url: str = field(default="", repr=False)  # a Slack hook's path is its secret
    webhook_format: str = "json"  # json | slack


@dataclass(frozen=True)
class ReportSettings:
    """The admin reports (domain/reports.py): the IANA zone their days, weeks and months are
    counted in, and their schedules fire in (LAMPLIGHTER_REPORTS_ZONE, default UTC)."""

    zone: str = "UTC"


@dataclass(frozen=True)
class OperationsSettings:
    """The operations jobs (README "Operations jobs"): health check, performance samples,
    backups and database optimization. Read by storage/settings_sections.py ``operations``."""

    health_interval: float = 300.0  # seconds between health checks; `lamplighter health` allows twice this
    health_queue_lag: float = 300.0  # oldest waiting job older than this fails the queue check
    health_min_free_bytes: int = 1024 ** 3  # embedded mode: free disk under the data directory
    health_retention: float = 7 * 86400.0
    perf_retention: float = 30 * 86400.0
    backup_keep_daily: int = 7
    backup_keep_monthly: int = 12
    backup_scratch_url: str = field(default="", repr=False)  # empty: a scratch database on the same server
    backup_pg_bin_dir: str = ""  # empty: the newest fitting pg_dump found
    backup_lock_wait_timeout: float = 60.0  # pg_dump --lock-wait-timeout, seconds
    optimize_reindex_ratio: float = 0.3  # reindex indexes whose estimated bloat is at least this
    optimize_lock_timeout: float = 1.0  # seconds any statement of database.optimize waits for a lock (<= 1)


@dataclass(frozen=True)
class IntegrationSettings:
    """Cloud integrations (domain/integrations.py): when tokens are refreshed and how the file
    index pages through a provider (LAMPLIGHTER_INTEGRATIONS_*)."""

    refresh_lead: float = 300.0  # seconds before expiry a refresh runs
    default_token_lifetime: float = 3600.0  # seconds, when a token response has no expires_in
    index_page_size: int = 1000  # files asked for per page of a provider's listing
    index_pages_per_run: int = 20  # pages one index_files run stores before it queues its continuation


# The kinds of process a connection can belong to (storage/connection.py's set_process_kind).
PROCESS_KINDS = ("release", "web", "worker", "scheduler", "cli")


@dataclass(frozen=True)
class DatabaseSettings:
    """Per process kind, the statement timeout its sessions get (seconds; 0: Lamplighter sets
    none, the role's or server's default applies); and where the dashboard's read-only pages
    read (a replica's URL; empty: the primary)."""

    statement_timeout_web: float = 30.0  # a request must not hold a pool connection for minutes
    statement_timeout_scheduler: float = 60.0  # one tick's queries; a stuck one loses the lease anyway
    statement_timeout_worker: float = 0.0  # actors' own statements: bounded by their time limits
    read_url: str = ""  # LAMPLIGHTER_READ_DATABASE_URL

    def statement_timeout(self, kind: str) -> float:
        """The release step and the CLI set none: a migration or an operator's command may
        rightly run long, and the migrations that lock take their own lock_timeout."""
        return {"web": self.statement_timeout_web, "scheduler": self.statement_timeout_scheduler,
                "worker": self.statement_timeout_worker}.get(kind, 0.0)


@dataclass(frozen=True)
class WebSettings:
    """The web process (console/web/): its database pool, request body limit and graceful stop."""

    pool_size: int = 10  # database connections at most (LAMPLIGHTER_WEB_POOL_SIZE)
    pool_timeout: float = 10.0  # seconds a request waits for one before a 503
    max_body_bytes: int = 16 * 1024 * 1024  # larger request bodies get a 413 before parsing
    shutdown_timeout: float = 25.0  # seconds in-flight requests get after SIGTERM


@dataclass(frozen=True)
class FederationSettings:
    """OpenID Federation publishing (domain/federation.py), from LAMPLIGHTER_FEDERATION_*.

    ``entity_id`` is this entity's identifier (an https URL; the ``/.well-known/*`` documents
    are served under it). ``authority_hints`` are the superiors' entity identifiers; a trust
    anchor has none. ``trust_anchor_url``: when set, a new Federation Entity Key signs only once
    the superior's Subordinate Statement about this entity lists it."""

    entity_id: str = ""
    authority_hints: tuple[str, ...] = ()
    trust_anchor: bool = False  # this entity is itself a trust anchor: no authority_hints
    trust_anchor_url: str = ""
    entity_type: str = "openid_provider"  # the metadata entry that gets jwks_uri and signed_jwks_uri
    metadata: str = "{}"  # extra metadata (a JSON object of entity types), merged in
    key_alg: str = "ES256"  # ES256 (EC P-256) | RS256 | PS256 (RSA, rsa_bits)
    rsa_bits: int = 2048
    lifetime: float = 72 * 3600.0  # exp - iat of the signed documents
    max_age: float = 3600.0  # Cache-Control max-age ceiling; always below the remaining lifetime
    rotation_overlap: float = 72 * 3600.0  # next -> active, and retired -> removed
    write_files: bool = False  # also write .federation-entity-statement.jwt and .federation-jwks.json

    def in_use(self) -> bool:
        """Whether this deployment publishes at all: any of the settings that say what it is are set.
        Not in use, the scheduled federation jobs have nothing to do; half set, they fail."""
        return bool(self.entity_id or self.authority_hints or self.trust_anchor or self.trust_anchor_url)

    def missing(self) -> list[str]:
        """The settings still needed before anything can be published."""
        missing = [] if self.entity_id else ["LAMPLIGHTER_FEDERATION_ENTITY_ID"]
        if not self.trust_anchor and not self.authority_hints:
            missing.append("LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS (or LAMPLIGHTER_FEDERATION_TRUST_ANCHOR=true)")
        return missing


@dataclass(frozen=True)
class DocumentSettings:
    """Documents (domain/documents.py): a tenant's quota until an operator sets its own, and how
    long an upload is kept (LAMPLIGHTER_DOCUMENTS_*)."""

    max_documents: int = 10_000
    max_bytes: int = 10 * 1024 ** 3
    retention_days: int = 365


@dataclass(frozen=True)
class BillingSettings:
    """The billing service usage is reported to (LAMPLIGHTER_BILLING_URL, _TOKEN); no URL: not reported."""

    url: str = field(default="", repr=False)  # may carry a key in its query
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class WebhookSettings:
    """Signed webhooks (domain/webhooks.py): deliveries at once per endpoint (LAMPLIGHTER_WEBHOOKS_CONCURRENCY)."""

    concurrency_per_endpoint: int = 4
