"""Licenses and subscriptions (queries in sql/licenses.sql; rules in domain/licenses.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("licenses")


@dataclass(frozen=True)
class License:
    id: int
    tenant_id: str
    plan: str
    seats: int
    seats_used: int | None
    expires_at: datetime
    status: str


@dataclass(frozen=True)
class SeatCount:
    id: int
    tenant_id: str
    tenant_name: str
    plan: str
    seats: int
    seats_used: int
    expires_at: datetime
    now: datetime  # the database's clock


def insert(tenant_id: str, *, plan: str, seats: int, expires_at: datetime) -> License:
    [row] = rows(execute("license_insert", {"tenant_id": tenant_id, "plan": plan, "seats": seats,
                                            "expires_at": expires_at}))
    return License(**row)


def expire_due() -> list[dict]:
    return rows(execute("license_expire_due"))


def count_seats() -> list[SeatCount]:
    return [SeatCount(**row) for row in rows(execute("license_count_seats"))]


def list_licenses(*, scope: TenantScope) -> list[License]:
    return [License(**row) for row in rows(execute("license_list", scoped(scope)))]
