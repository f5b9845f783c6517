"""Users (lamplighter.users). Reads and changes take a tenant scope (storage/tenants.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.queries import rows, runner
from storage.tenants import TenantScope, scoped

execute = runner("users")


@dataclass(frozen=True)
class User:
    id: int
    email: str
    display_name: str
    role: str
    tenant_id: str | None
    disabled_at: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    password_hash: str | None = field(default=None, repr=False)

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


def _one(cursor) -> User | None:
    found = rows(cursor)
    return User(**found[0]) if found else None


def insert(*, email: str, display_name: str, password_hash: str | None, role: str,
           tenant_id: str | None) -> User | None:
    """The new user, or None when the e-mail address is taken."""
    return _one(execute("user_insert", {"email": email, "display_name": display_name,
                                        "password_hash": password_hash, "role": role, "tenant_id": tenant_id}))


def get(user_id: int, *, scope: TenantScope) -> User | None:
    return _one(execute("user_get", scoped(scope, id=user_id)))


def get_by_email(email: str, *, scope: TenantScope) -> User | None:
    return _one(execute("user_get_by_email", scoped(scope, email=email)))


def find_for_login(email: str) -> User | None:
    """Sign-in's look-up, before any tenant is known."""
    return _one(execute("user_find_for_login", {"email": email}))


def list_users(*, scope: TenantScope) -> list[User]:
    return [User(**row) for row in rows(execute("user_list", scoped(scope)))]


def disable(user_id: int, *, scope: TenantScope) -> User | None:
    """Disable the user and end its sessions; None when no such user is in scope."""
    return _one(execute("user_disable", scoped(scope, id=user_id)))


def set_password_hash(user_id: int, password_hash: str, *, scope: TenantScope) -> User | None:
    """Replace the password hash and end the user's sessions; None when no such user is in scope."""
    return _one(execute("user_set_password_hash", scoped(scope, id=user_id, password_hash=password_hash)))


def record_login(user_id: int, *, new_password_hash: str | None = None) -> None:
    execute("user_record_login", {"id": user_id, "password_hash": new_password_hash})
