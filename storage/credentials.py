"""The credentials view (migration 0009) as the expiry notifications read it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner

execute = runner("credentials")


@dataclass(frozen=True)
class Credential:
    kind: str
    credential_id: str
    name: str
    owner: str
    tenant_id: str | None
    expires_at: datetime


def expiring(*, days: int, limit: int) -> list[Credential]:
    return [Credential(**row) for row in rows(execute("credentials_expiring", {"days": days, "limit": limit}))]


def database_now() -> datetime:
    return execute("credentials_now").fetchone()[0]
