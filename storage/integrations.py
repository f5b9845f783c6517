"""Cloud providers and integrations (queries in sql/integrations.sql; migration 0018).

Client secrets and OAuth tokens are encrypted here, on the way in, with storage/encryption.py,
and stay encrypted in the rows handed back: :func:`reveal` decrypts one value where it is about
to be used (an outbound call), so a row printed, logged or put in an error shows ``enc:v1:...``
at worst, and the dataclasses keep secrets out of their repr. The columns are registered in
``encryption.ENCRYPTED_COLUMNS``, so ``maintenance.rotate_encryption_keys`` re-encrypts them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime

from storage import encryption
from storage.queries import rows, runner, transaction
from storage.tenants import TenantScope, scoped

execute = runner("integrations")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
STATUSES = ("active", "expired", "revoked", "error")

for _table, _column in (("lamplighter.cloud_providers", "client_secret"), ("lamplighter.integrations", "access_token"),
                        ("lamplighter.integrations", "refresh_token")):
    encryption.ENCRYPTED_COLUMNS.append(encryption.EncryptedColumn(_table, "id", _column))


@dataclass(frozen=True)
class CloudProvider:
    id: int
    name: str
    token_url: str
    userinfo_url: str
    files_url: str
    client_id: str
    client_secret: str = field(repr=False)  # enc:v1:
    client_auth_method: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Integration:
    id: int
    tenant_id: str
    provider_id: int
    name: str
    owner_user_id: int | None
    access_token: str = field(repr=False)  # enc:v1:
    refresh_token: str | None = field(repr=False)  # enc:v1:, or None
    expires_at: datetime
    status: str
    status_message: str | None
    generation: int
    connected_at: datetime
    last_refreshed_at: datetime | None
    refresh_failed_at: datetime | None
    last_health_check_at: datetime | None
    last_indexed_at: datetime | None
    index_pass: int
    index_cursor: str | None
    created_at: datetime
    updated_at: datetime
    now: datetime  # the database's lamplighter.now() when the row was read


@dataclass(frozen=True)
class IntegrationSummary:
    """An integration as listings show it: its provider by name and how many files are indexed."""

    integration: Integration
    provider_name: str
    files: int


@dataclass(frozen=True)
class IndexedFile:
    integration_id: int
    provider_file_id: str
    name: str
    path: str
    size_bytes: int | None
    mime_type: str | None
    modified_at: datetime | None
    seen_pass: int
    indexed_at: datetime


_INTEGRATION_FIELDS = tuple(f.name for f in fields(Integration))


def _integration(row: dict) -> Integration:
    return Integration(**{k: row[k] for k in _INTEGRATION_FIELDS})


def _one_integration(cursor) -> Integration | None:
    found = rows(cursor)
    return _integration(found[0]) if found else None


def seal(secret: str | None) -> str | None:
    return None if secret is None else encryption.keyring().encrypt(secret)


def reveal(value: str | None) -> str | None:
    """The plaintext of an encrypted column's value, where it is about to be used."""
    return None if value is None else encryption.keyring().decrypt(value)


# ---- providers -------------------------------------------------------------------------------

def upsert_provider(*, name: str, token_url: str, userinfo_url: str, files_url: str, client_id: str,
                    client_secret: str, client_auth_method: str) -> CloudProvider:
    [found] = rows(execute("provider_upsert", {
        "name": name, "token_url": token_url, "userinfo_url": userinfo_url, "files_url": files_url,
        "client_id": client_id, "client_secret": seal(client_secret), "client_auth_method": client_auth_method}))
    return CloudProvider(**found)


def get_provider(provider_id: int) -> CloudProvider | None:
    found = rows(execute("provider_get", {"id": provider_id}))
    return CloudProvider(**found[0]) if found else None


def get_provider_by_name(name: str) -> CloudProvider | None:
    found = rows(execute("provider_get_by_name", {"name": name}))
    return CloudProvider(**found[0]) if found else None


def list_providers() -> list[CloudProvider]:
    return [CloudProvider(**r) for r in rows(execute("provider_list"))]


# ---- integrations ----------------------------------------------------------------------------

def connect(*, tenant_id: str, provider_id: int, name: str, owner_user_id: int | None, access_token: str,
            refresh_token: str | None, lifetime: float) -> Integration:
    """Store the tokens (a new integration, or the same one connected again); expires_at is the
    database's now plus ``lifetime`` seconds."""
    return _one_integration(execute("integration_connect", {
        "tenant_id": tenant_id, "provider_id": provider_id, "name": name, "owner_user_id": owner_user_id,
        "access_token": seal(access_token), "refresh_token": seal(refresh_token), "lifetime": lifetime}))


def get(integration_id: int) -> Integration | None:
    """By id, whoever's: for the job whose argument it is."""
    return _one_integration(execute("integration_get", {"id": integration_id}))


def get_scoped(integration_id: int, *, scope: TenantScope) -> Integration | None:
    return _one_integration(execute("integration_get_scoped", scoped(scope, id=integration_id)))


def list_integrations(*, scope: TenantScope, status: str | None = None, limit: int = 100) -> list[IntegrationSummary]:
    return [IntegrationSummary(integration=_integration(r), provider_name=r["provider_name"], files=r["files"])
            for r in rows(execute("integration_list", scoped(scope, status=status, limit=limit)))]


def store_refreshed(integration_id: int, *, seen_access_token: str, access_token: str, refresh_token: str | None,
                    lifetime: float) -> Integration | None:
    """The new tokens, if the row still holds ``seen_access_token`` (its encrypted value as read);
    None when a reconnect or another refresh changed it meanwhile."""
    return _one_integration(execute("integration_store_refreshed", {
        "id": integration_id, "seen_access_token": seen_access_token, "access_token": seal(access_token),
        "refresh_token": seal(refresh_token), "lifetime": lifetime}))


def record_refresh_failure(integration_id: int, *, generation: int, message: str) -> Integration | None:
    return _one_integration(execute("integration_record_refresh_failure",
                                    {"id": integration_id, "generation": generation, "message": message}))


def give_up(integration_id: int, *, generation: int, status: str, message: str,
            drop_refresh_token: bool) -> Integration | None:
    """Status expired/revoked/error for this connection; None when it was reconnected (or given
    up) meanwhile."""
    return _one_integration(execute("integration_give_up", {
        "id": integration_id, "generation": generation, "status": status, "message": message,
        "drop_refresh_token": drop_refresh_token}))


def record_health(integration_id: int, *, message: str | None) -> None:
    execute("integration_record_health", {"id": integration_id, "message": message})


def active_ids(*, after: int, limit: int) -> list[int]:
    return [r[0] for r in execute("integration_active_ids", {"after": after, "limit": limit}).fetchall()]


# ---- the file index --------------------------------------------------------------------------

def store_page(integration_id: int, *, index_pass: int, files: list[dict], next_cursor: str | None) -> None:
    """One page of the provider's listing and where the pass stands after it, in one transaction:
    a run stopped at any point resumes at the first page not stored."""
    with transaction():
        if files:
            execute("integration_files_upsert", {"integration_id": integration_id, "pass": index_pass,
                                                 "files": json.dumps(files)})
        execute("integration_index_advance", {"id": integration_id, "pass": index_pass, "cursor": next_cursor})


def delete_unseen_batch(integration_id: int, *, index_pass: int, batch_size: int) -> int:
    return execute("integration_files_delete_unseen", {"integration_id": integration_id, "pass": index_pass,
                                                       "batch_size": batch_size}).rowcount


def finish_pass(integration_id: int, *, index_pass: int) -> None:
    execute("integration_index_finish", {"id": integration_id, "pass": index_pass})


def list_files(integration_id: int, *, scope: TenantScope, limit: int = 100) -> list[IndexedFile]:
    return [IndexedFile(**r) for r in rows(execute("integration_files_list",
                                                   scoped(scope, integration_id=integration_id, limit=limit)))]
