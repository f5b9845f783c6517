"""Users: people who sign in to the dashboard, each with one role (domain/scopes.py) and, unless
they are platform users, one tenant. Passwords are argon2id hashes (domain/passwords.py).

Creating, disabling and resetting the password of a user are audited, and so is every sign-in,
failed or not. A failed sign-in's row names the user only when the address matched one: what was
typed in the address field of a failed attempt may be a password.
"""
from __future__ import annotations

import hashlib
import re

import structlog

from domain import audit, passwords, scopes
from domain import tenants as tenant_rules
from domain.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from storage import connection
from storage import users as user_rows
from storage.tenants import TenantScope
from storage.users import User

log = structlog.get_logger("lamplighter.users")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_FIELD_LIMIT = 200
SIGN_IN_REFUSED = "wrong e-mail address or password"


def _check_email(email: str) -> str:
    if not isinstance(email, str) or not _EMAIL.match(email.strip()) or len(email) > _FIELD_LIMIT:
        raise InvalidInput(f"{email!r} is not an e-mail address")
    return email.strip()


def create_user(*, email: str, display_name: str, role: str, password: str | None, tenant_id: str | None = None,
                by: str, source: str | None = None) -> User:
    """A new user. ``password`` None: the user cannot sign in until one is set (reset_password)."""
    email = _check_email(email)
    if not isinstance(display_name, str) or not display_name.strip() or len(display_name) > _FIELD_LIMIT:
        raise InvalidInput(f"a display name needs 1 to {_FIELD_LIMIT} characters")
    scopes.scopes_of_role(role)
    password_hash = None if password is None else passwords.hash_password(password)
    with connection.transaction():
        if tenant_id is not None:
            tenant_rules.get_tenant(tenant_id)
        user = user_rows.insert(email=email, display_name=display_name.strip(), password_hash=password_hash,
                                role=role, tenant_id=tenant_id)
        if user is None:
            raise Conflict(f"a user with e-mail address {email!r} already exists")
        audit.record(by, "user.created", target_type="user", target_id=user.id, tenant_id=tenant_id, source=source,
                     details={"email": user.email, "role": role, "password_set": password is not None})
    log.info("user_created", user_id=user.id, role=role, tenant_id=tenant_id, by=by)
    return user


def list_users(*, scope: TenantScope) -> list[User]:
    return user_rows.list_users(scope=scope)


def find_user(ref: str | int, *, scope: TenantScope) -> User:
    """A user by id (digits) or e-mail address, among those ``scope`` sees."""
    text = str(ref).strip()
    user = (user_rows.get(int(text), scope=scope) if text.isdigit()
            else user_rows.get_by_email(text, scope=scope))
    if user is None:
        raise NotFound(f"no user {text!r}")
    return user


def disable_user(ref: str | int, *, scope: TenantScope, by: str, source: str | None = None) -> User:
    """Disable a user (it can no longer sign in) and end its sessions. Disabling a disabled user
    changes nothing and records nothing."""
    with connection.transaction():
        user = find_user(ref, scope=scope)
        if user.disabled:
            return user
        user = user_rows.disable(user.id, scope=scope)
        audit.record(by, "user.disabled", target_type="user", target_id=user.id, tenant_id=user.tenant_id,
                     source=source, details={"email": user.email})
    log.info("user_disabled", user_id=user.id, by=by)
    return user


def reset_password(ref: str | int, password: str, *, scope: TenantScope, by: str, source: str | None = None) -> User:
    """Set a new password; the user's sessions end."""
    password_hash = passwords.hash_password(password)
    with connection.transaction():
        user = find_user(ref, scope=scope)
        user = user_rows.set_password_hash(user.id, password_hash, scope=scope)
        audit.record(by, "user.password_reset", target_type="user", target_id=user.id, tenant_id=user.tenant_id,
                     source=source, details={"email": user.email})
    log.info("user_password_reset", user_id=user.id, by=by)
    return user


def login_key(email) -> str:
    """What a failed sign-in for an address no account has is recorded under (audit target
    ``login``): a digest of the address as sign-in looks it up, so that the per-account limit
    (domain/sign_in_limits.py) counts it as it counts an account's (a refusal that came only for
    real accounts would tell which addresses have one), and what was typed into the address field
    (sometimes a password) is not kept."""
    typed = email.strip().lower() if isinstance(email, str) else ""
    return "sha256:" + hashlib.sha256(typed.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def sign_in(email: str, password: str, *, source: str | None = None) -> User:
    """The user whose address and password these are; raises Unauthenticated otherwise (also for
    a disabled user, after the same work, with the same message)."""
    user = user_rows.find_for_login(email.strip()) if isinstance(email, str) else None
    matches = passwords.verify(user.password_hash if user else None, password)
    if user is None or not matches or user.disabled:
        reason = "unknown_user" if user is None else "disabled" if user.disabled and matches else "wrong_password"
        audit.record(f"user:{user.id}" if user else "anonymous", "user.sign_in_failed",
                     target_type="user" if user else "login", target_id=user.id if user else login_key(email),
                     tenant_id=user.tenant_id if user else None, source=source, details={"reason": reason})
        log.warning("user_sign_in_failed", user_id=user.id if user else None, reason=reason, source=source)
        raise Unauthenticated(SIGN_IN_REFUSED)
    rehashed = passwords.hash_password(password, check=False) if passwords.needs_rehash(user.password_hash) else None
    with connection.transaction():
        user_rows.record_login(user.id, new_password_hash=rehashed)
        audit.record(f"user:{user.id}", "user.signed_in", target_type="user", target_id=user.id,
                     tenant_id=user.tenant_id, source=source)
    log.info("user_signed_in", user_id=user.id, source=source)
    return user


def principal_of(user: User, *, tenant_status: str | None) -> scopes.Principal:
    """What a signed-in user may do: its role's scopes, within its tenant."""
    return scopes.Principal(actor=f"user:{user.id}",
                            scopes=scopes.principal_scopes(scopes.scopes_of_role(user.role), user.tenant_id),
                            tenant_id=user.tenant_id, tenant_status=tenant_status)
