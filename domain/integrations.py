"""Cloud integrations: a tenant's OAuth 2.0 connection to a cloud storage provider, kept alive
(README "Cloud integrations").

* **Tokens are refreshed before they expire.** Whenever tokens are stored (connect, refresh) the
  next refresh is scheduled ``lead`` seconds (5 minutes) before expiry through the :class:`Jobs`
  port, under the integration's own unique key with the ``replace`` policy: at most one refresh
  waits per integration, and a new schedule moves it, earlier or later. A running refresh
  schedules its successor under that key (the engine gives the key up to it).
* **One refresh at a time, no lock across the call.** Refresh jobs of one integration share a
  concurrency key (limit 1). The job re-reads the row, skips when someone refreshed it already
  (and makes sure a refresh still waits for the new expiry), calls the token endpoint with no
  transaction open, and stores the answer only if the row still holds the access token it
  started from.
* **Refusals are permanent, outages are not.** ``invalid_grant`` → expired; ``invalid_client`` /
  ``unauthorized_client`` → revoked; the owner is told once per connection through the outbox.
  A network error, a timeout, 429 or 5xx is a :class:`RetryLater` (the job's backoff, or the
  provider's Retry-After); the integration stays active until its access token has really expired.
* **Health checks** (every 4 hours, :func:`check_health`): the userinfo endpoint with the access
  token. Expired → an urgent refresh; refused again after a failed refresh → revoked and the owner
  told; any other trouble is recorded and logged, not retried (the next sweep looks again).

Plain Python on plain data: the provider's HTTP adapter (actors/cloud_providers.py) and the job
queue (actors/integrations.py) come in as ports. Tokens appear in no log line, error, job
argument or history row: rows hold them encrypted, and they are decrypted only to be handed to
the provider adapter. File indexing is domain/integration_files.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Protocol

import structlog

from domain import audit, tenants, users
from domain.errors import InvalidInput, NotFound
from domain.notifications import Recipient, notify
from domain.outcomes import PermanentFailure, RetryLater
from storage import integrations as rows
from storage.integrations import AUTH_METHODS, CloudProvider, Integration
from storage.queries import transaction
from storage.settings import IntegrationSettings
from storage.tenants import TenantScope

log = structlog.get_logger("lamplighter.integrations")

# RFC 6749 §5.2 errors that no retry will cure, and the status each leaves.
REFUSALS = {"invalid_grant": "expired", "invalid_client": "revoked", "unauthorized_client": "revoked"}
# A refresh job that finds more than lead + this left was refreshed by someone else.
DUE_SLACK = 30.0
MESSAGE_LIMIT = 500
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


# ---- ports -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenResponse:
    """A token endpoint's success (RFC 6749 §5.1); ``expires_in`` None when it gave none."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False, default=None)
    expires_in: float | None = None


class TokenRefused(Exception):
    """The token endpoint's error response (RFC 6749 §5.2): ``invalid_grant`` and the like."""

    def __init__(self, error: str, description: str | None = None):
        super().__init__(f"{error}{f': {description}' if description else ''}")
        self.error = error


@dataclass(frozen=True)
class FilePage:
    """One page of a provider's file listing: dicts with id, name, path, size, mime_type,
    modified_at; ``next_cursor`` None on the last page."""

    files: list[dict]
    next_cursor: str | None


class Provider(Protocol):
    """A provider's endpoints. Each call raises RetryLater (network, 429, 5xx) or
    PermanentFailure (anything else it cannot use)."""

    def refresh(self, refresh_token: str) -> TokenResponse:
        """RFC 6749 §6; raises :class:`TokenRefused` for an OAuth error response."""

    def userinfo(self, access_token: str) -> bool:
        """True when the provider accepts the access token, False on 401."""

    def list_files(self, access_token: str, cursor: str | None, page_size: int) -> FilePage: ...


ProviderFor = Callable[[int], Provider]  # provider id -> its adapter


class Jobs(Protocol):
    """The integration jobs, as the actors queue them."""

    def schedule_refresh(self, integration_id: int, delay: float, *, tenant_id: str | None = None,
                         urgent: bool = False) -> str:
        """Queue (or move) the integration's one pending refresh; urgent: high priority. Its job id."""

    def index_files(self, integration_id: int, *, tenant_id: str | None = None, delay: float = 0.0) -> str: ...

    def check_health_many(self, integration_ids: list[int]) -> int: ...

    def index_files_many(self, integration_ids: list[int]) -> int: ...


# ---- providers and connections -----------------------------------------------------------------

def save_provider(*, name: str, token_url: str, userinfo_url: str, files_url: str, client_id: str,
                  client_secret: str, client_auth_method: str = "client_secret_basic", by: str) -> CloudProvider:
    """Add a provider or change one (by name); the client secret is stored encrypted."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"provider name {name!r}: 1 to 63 lowercase letters, digits, '.', '_' or '-'")
    for label, url in (("token URL", token_url), ("userinfo URL", userinfo_url), ("files URL", files_url)):
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise InvalidInput(f"{label}: expected an http(s):// URL")
    if not client_id or not client_id.strip():
        raise InvalidInput("a provider needs a client id")
    if not client_secret:
        raise InvalidInput("a provider needs a client secret")
    if client_auth_method not in AUTH_METHODS:
        raise InvalidInput(f"client authentication must be one of {', '.join(AUTH_METHODS)}")
    with transaction():
        provider = rows.upsert_provider(name=name, token_url=token_url, userinfo_url=userinfo_url,
                                        files_url=files_url, client_id=client_id.strip(), client_secret=client_secret,
                                        client_auth_method=client_auth_method)
        audit.record(by, "cloud_provider.saved", target_type="cloud_provider", target_id=provider.id,
                     details={"name": name, "client_auth_method": client_auth_method})
    log.info("cloud_provider_saved", provider=name, client_auth_method=client_auth_method, by=by)
    return provider


def token_response(body: object) -> TokenResponse:
    """A token response as JSON gives it (RFC 6749 §5.1), checked: what `connect` reads on stdin
    and what the provider adapter parses."""
    if not isinstance(body, dict):
        raise InvalidInput("a token response is a JSON object")
    access = body.get("access_token")
    refresh = body.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise InvalidInput("the token response has no access_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise InvalidInput("refresh_token must be a non-empty string")
    return TokenResponse(access_token=access, refresh_token=refresh, expires_in=expires_in(body.get("expires_in")))


def expires_in(value: object) -> float | None:
    """``expires_in`` as seconds (a number, or digits in a string); None when absent or unusable."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def lifetime(tokens: TokenResponse, settings: IntegrationSettings, **context) -> float:
    """The token's lifetime: its expires_in, else the configured default (logged: RFC 6749 §5.1
    only recommends expires_in)."""
    if tokens.expires_in is not None:
        return tokens.expires_in
    log.info("integration_token_lifetime_defaulted", lifetime_s=settings.default_token_lifetime, **context)
    return settings.default_token_lifetime


def refresh_delay(row: Integration, settings: IntegrationSettings) -> float:
    """Seconds from the row's "now" to its next refresh: ``lead`` before expiry; a token that
    lives less than two leads is refreshed halfway through what is left."""
    left = (row.expires_at - row.now).total_seconds()
    if left > 2 * settings.refresh_lead:
        return left - settings.refresh_lead
    return max(left / 2, 0.0)


def connect(*, tenant_id: str, provider: str, tokens: TokenResponse, jobs: Jobs, settings: IntegrationSettings,
            by: str, name: str = "default", owner: str | None = None) -> Integration:
    """Store a tenant's tokens for a provider (a new integration, or the same one again), schedule
    its refresh and index its files, in one transaction with the audit row."""
    tenants.get_tenant(tenant_id)
    found = rows.get_provider_by_name(provider)
    if found is None:
        raise NotFound(f"no cloud provider {provider!r}")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("an integration needs a name")
    owner_id = users.find_user(owner, scope=TenantScope.of(tenant_id)).id if owner else None
    seconds = lifetime(tokens, settings, tenant_id=tenant_id, provider=provider)
    with transaction():
        row = rows.connect(tenant_id=tenant_id, provider_id=found.id, name=name.strip(), owner_user_id=owner_id,
                           access_token=tokens.access_token, refresh_token=tokens.refresh_token, lifetime=seconds)
        if row.refresh_token is not None:
            jobs.schedule_refresh(row.id, refresh_delay(row, settings), tenant_id=tenant_id)
        jobs.index_files(row.id, tenant_id=tenant_id)
        audit.record(by, "integration.connected", target_type="integration", target_id=row.id, tenant_id=tenant_id,
                     details={"provider": provider, "name": row.name, "generation": row.generation})
    log.info("integration_connected", integration_id=row.id, tenant_id=tenant_id, provider=provider,
             generation=row.generation, expires_at=row.expires_at.isoformat(), by=by)
    return row


def request_refresh(integration_id: int, *, scope: TenantScope, jobs: Jobs, by: str) -> str:
    """An operator's "refresh now": the integration's pending refresh moved to now, urgent."""
    row = get(integration_id, scope=scope)
    if row.refresh_token is None or row.status not in ("active", "expired"):
        raise InvalidInput(f"integration {row.id} is {row.status} without a usable refresh token: connect it again")
    with transaction():
        job_id = jobs.schedule_refresh(row.id, 0.0, tenant_id=row.tenant_id, urgent=True)
        audit.record(by, "integration.refresh_requested", target_type="integration", target_id=row.id,
                     tenant_id=row.tenant_id, details={"job_id": job_id})
    return job_id


def get(integration_id: int, *, scope: TenantScope) -> Integration:
    row = rows.get_scoped(integration_id, scope=scope)
    if row is None:
        raise NotFound(f"no integration {integration_id}")
    return row


# ---- refreshing ----------------------------------------------------------------------------------

def refresh(integration_id: int, *, provider_for: ProviderFor, jobs: Jobs, settings: IntegrationSettings,
            force: bool = False) -> dict:
    """One refresh job (RFC 6749 §6). Returns what happened, for the job's history row; raises
    RetryLater while the provider is unreachable, PermanentFailure for an answer that is not OAuth."""
    row = rows.get(integration_id)
    if row is None:
        return {"outcome": "missing"}
    if row.status not in ("active", "expired") or row.refresh_token is None:
        return {"outcome": "skipped", "status": row.status}
    left = (row.expires_at - row.now).total_seconds()
    if not force and left > settings.refresh_lead + DUE_SLACK:
        jobs.schedule_refresh(row.id, refresh_delay(row, settings), tenant_id=row.tenant_id)
        log.info("integration_refresh_skipped", integration_id=row.id, tenant_id=row.tenant_id,
                 expires_in_s=round(left))
        return {"outcome": "already_refreshed"}
    context = {"integration_id": row.id, "tenant_id": row.tenant_id}
    try:  # no transaction and no row lock while the provider answers
        tokens = provider_for(row.provider_id).refresh(rows.reveal(row.refresh_token))
    except TokenRefused as refused:
        status = REFUSALS.get(refused.error, "error")
        _give_up(row, status, f"the provider refused the refresh: {refused}", drop_refresh_token=True)
        log.warning("integration_refresh_refused", error=refused.error, status=status, **context)
        return {"outcome": status, "error": refused.error}
    except RetryLater as exc:
        rows.record_refresh_failure(row.id, generation=row.generation, message=_short(f"refresh failed: {exc}"))
        log.warning("integration_refresh_failed_will_retry", error=str(exc), retry_in_s=exc.delay, **context)
        raise
    except PermanentFailure as exc:
        _give_up(row, "error", f"refresh failed: {exc}", drop_refresh_token=False)
        log.error("integration_refresh_failed", error=str(exc), **context)
        raise
    seconds = lifetime(tokens, settings, **context)
    with transaction():
        stored = rows.store_refreshed(row.id, seen_access_token=row.access_token, access_token=tokens.access_token,
                                      refresh_token=tokens.refresh_token, lifetime=seconds)
        current = stored or rows.get(row.id)
        if current is not None and current.status == "active" and current.refresh_token is not None:
            jobs.schedule_refresh(row.id, refresh_delay(current, settings), tenant_id=row.tenant_id)
    if stored is None:
        log.info("integration_refresh_superseded", **context)
        return {"outcome": "superseded"}
    log.info("integration_refreshed", expires_in_s=seconds, rotated=tokens.refresh_token is not None, **context)
    return {"outcome": "refreshed", "expires_in": seconds, "rotated": tokens.refresh_token is not None}


def _give_up(row: Integration, status: str, message: str, *, drop_refresh_token: bool) -> Integration | None:
    """The integration's new status and its owner told, once per connection, in one transaction."""
    with transaction():
        updated = rows.give_up(row.id, generation=row.generation, status=status, message=_short(message),
                               drop_refresh_token=drop_refresh_token)
        if updated is not None:
            tell_owner(updated, status, message)
    return updated


def tell_owner(row: Integration, status: str, message: str) -> int | None:
    """The integration's owner (or, without one, the tenant's owners) told, once per connection
    and status: the outbox's dedupe key."""
    recipient = Recipient.user(row.owner_user_id) if row.owner_user_id else Recipient.tenant_owner(row.tenant_id)
    what = {"expired": "has expired", "revoked": "was revoked", "error": "stopped working"}[status]
    return notify(recipient, kind=f"integration.{status}", dedupe_key=f"integration:{row.id}:{row.generation}:{status}",
                  subject=f"Cloud integration {row.name!r} {what}",
                  text=(f"Lamplighter can no longer reach your files through the cloud integration {row.name!r} "
                        f"(id {row.id}): {_short(message)}\n\nConnect it again to resume syncing."),
                  tenant_id=row.tenant_id)


# ---- health --------------------------------------------------------------------------------------

def check_health(integration_id: int, *, provider_for: ProviderFor, jobs: Jobs) -> dict:
    """One health check. Never raises for the provider's trouble: an error is recorded and logged,
    and the next sweep tries again."""
    row = rows.get(integration_id)
    if row is None or row.status != "active":
        return {"outcome": "skipped", "status": row.status if row else "missing"}
    context = {"integration_id": row.id, "tenant_id": row.tenant_id}
    if row.expires_at <= row.now:
        return _urgent_refresh(row, jobs, "the access token has expired", context)
    try:
        accepted = provider_for(row.provider_id).userinfo(rows.reveal(row.access_token))
    except (RetryLater, PermanentFailure) as exc:
        rows.record_health(row.id, message=_short(f"health check failed: {exc}"))
        log.warning("integration_health_check_failed", error=str(exc), **context)
        return {"outcome": "error"}
    if accepted:
        rows.record_health(row.id, message=None)
        return {"outcome": "healthy"}
    if row.refresh_failed_at is None:
        return _urgent_refresh(row, jobs, "the provider refused the access token", context)
    with transaction():
        rows.record_health(row.id, message="the provider refuses the access token, and the last refresh failed")
        _give_up(row, "revoked", "the provider refuses the access token, and refreshing it failed",
                 drop_refresh_token=False)
    log.warning("integration_revoked", **context)
    return {"outcome": "revoked"}


def _urgent_refresh(row: Integration, jobs: Jobs, why: str, context: dict) -> dict:
    with transaction():
        if row.refresh_token is None:  # nothing to refresh with: the connection is over
            rows.record_health(row.id, message=f"{why}, and there is no refresh token")
            _give_up(row, "expired", f"{why}, and there is no refresh token", drop_refresh_token=False)
        else:
            rows.record_health(row.id, message=f"{why}; urgent refresh queued")
            jobs.schedule_refresh(row.id, 0.0, tenant_id=row.tenant_id, urgent=True)
    log.warning("integration_health_expired", reason=why, refreshable=row.refresh_token is not None, **context)
    return {"outcome": "expired"}


def sweep(queue_many: Callable[[list[int]], int], *, batch_size: int = 1000) -> dict:
    """Queue one job per active integration (``queue_many``: health checks or indexing), a batch
    of ids at a time, each batch one statement and its own short transaction (each unique insert
    is a subtransaction in the engine: thousands in one open transaction would slow every other
    session's snapshots); unique keys keep sweeps from piling up."""
    queued, after = 0, 0
    while True:
        ids = rows.active_ids(after=after, limit=batch_size)
        if not ids:
            break
        queued += queue_many(ids)
        after = ids[-1]
    return {"queued": queued}


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT - 1] + "…"
