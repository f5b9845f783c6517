"""Passwords: argon2id hashes (argon2-cffi, its default parameters: argon2id, 64 MiB, 3
passes), a minimum length, and verification that takes as long for an unknown user as for a
wrong password. A password is never logged, stored, or put in an exception's message."""
from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 1024
_hasher = PasswordHasher()


def check_policy(password: str) -> None:
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidInput(f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters")
    if not password.strip():
        raise InvalidInput("a password cannot be only blanks")


def hash_password(password: str, *, check: bool = True) -> str:
    """An argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash), salted afresh.
    ``check=False`` rehashes a password already in use, whatever today's policy says."""
    if check:
        check_policy(password)
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``. No hash (a user without a password) or a
    malformed one never matches, after the same work as a real check."""
    if not password_hash or not password_hash.startswith("$argon2id$"):
        _burn(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a password anyone has")


def _burn(password: str) -> None:
    """The cost of a verification, so that "no such user" takes as long as "wrong password"."""
    try:
        _hasher.verify(_dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        pass
