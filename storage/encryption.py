"""Secrets at rest: one module, MultiFernet with key ids.

Keys come from ``LAMPLIGHTER_ENCRYPTION_KEYS``: comma-separated ``id:key`` pairs, newest first,
each key a Fernet key (``python -c "from cryptography.fernet import Fernet;
print(Fernet.generate_key().decode())"``). New values are encrypted with the first key; any listed
key decrypts. A stored value looks like ``enc:v1:<key id>:<fernet token>``, so rotation can find
the rows still on an old key with a plain ``LIKE`` and re-encrypt them in bounded batches.

With the embedded database (laptops) and no keys set, a development key is generated once and kept
in the data directory (mode 0600). With DATABASE_URL set, keys are required before anything is
encrypted or decrypted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storage import settings as settings_module

PREFIX = "enc:v1:"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class EncryptionError(RuntimeError):
    """Missing or bad keys, or a value that cannot be decrypted. Never carries the secret."""


@dataclass(frozen=True)
class EncryptedColumn:
    """A column holding ``enc:v1:`` values; rotation re-encrypts it in batches."""

    table: str  # schema-qualified
    key_column: str
    value_column: str


# Modules that store encrypted values add their columns here (at import time).
ENCRYPTED_COLUMNS: list[EncryptedColumn] = []


class Keyring:
    def __init__(self, keys: list[tuple[str, bytes]]):
        # Imported here, not at module import: a worker that never touches a secret starts
        # ~60 ms sooner (cryptography's import is most of storage's).
        from cryptography.fernet import Fernet, MultiFernet

        if not keys:
            raise EncryptionError("no encryption keys configured (LAMPLIGHTER_ENCRYPTION_KEYS)")
        self.primary_id = keys[0][0]
        try:
            self._by_id = {kid: Fernet(key) for kid, key in keys}
        except (ValueError, TypeError):
            raise EncryptionError("LAMPLIGHTER_ENCRYPTION_KEYS: each key must be a url-safe base64 "
                                  "32-byte Fernet key") from None
        self._all = MultiFernet([self._by_id[kid] for kid, _ in keys])

    @classmethod
    def parse(cls, spec: str) -> "Keyring":
        keys = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            kid, sep, key = part.partition(":")
            if not sep or not _KEY_ID.match(kid) or not key:
                raise EncryptionError("LAMPLIGHTER_ENCRYPTION_KEYS: expected comma-separated id:key pairs "
                                      "(id: letters, digits, _ or -)")
            keys.append((kid, key.encode()))
        if len({k for k, _ in keys}) != len(keys):
            raise EncryptionError("LAMPLIGHTER_ENCRYPTION_KEYS: key ids must be unique")
        return cls(keys)

    def encrypt(self, plaintext: str) -> str:
        token = self._by_id[self.primary_id].encrypt(plaintext.encode()).decode()
        return f"{PREFIX}{self.primary_id}:{token}"

    def decrypt(self, value: str) -> str:
        if not is_encrypted(value):
            raise EncryptionError("value is not encrypted (expected enc:v1:<key id>:<token>)")
        from cryptography.fernet import InvalidToken

        kid, _, token = value[len(PREFIX):].partition(":")
        fernet = self._by_id.get(kid, self._all)
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise EncryptionError(f"cannot decrypt a value under key id {kid!r}: wrong or missing key") from None

    def needs_rotation(self, value: str) -> bool:
        return is_encrypted(value) and not value.startswith(f"{PREFIX}{self.primary_id}:")

    def rotate(self, value: str) -> str:
        return self.encrypt(self.decrypt(value))


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def development_key(data_dir: Path) -> str:
    """The embedded mode's local key, created on first use."""
    from cryptography.fernet import Fernet

    path = data_dir / "encryption.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("dev:" + Fernet.generate_key().decode() + "\n")
    return path.read_text().strip()


_keyring: Keyring | None = None


def keyring() -> Keyring:
    """The process's keyring from settings (or the local development key in embedded mode)."""
    global _keyring
    current = settings_module.get()
    if _keyring is None:
        spec = current.encryption_keys
        if not spec:
            if not current.embedded:
                raise EncryptionError("LAMPLIGHTER_ENCRYPTION_KEYS is not set; it is required with DATABASE_URL")
            spec = development_key(current.data_dir)
        _keyring = Keyring.parse(spec)
    return _keyring


def reset() -> None:
    global _keyring
    _keyring = None


def rotate_batch(conn, column: EncryptedColumn, ring: Keyring, *, batch_size: int = 500) -> int:
    """Re-encrypt up to ``batch_size`` values of ``column`` still under an old key; returns the
    count. One short transaction; rows locked by others are skipped, so it is safe to run
    while the application writes."""
    not_primary = f"{PREFIX}{ring.primary_id}:%"
    with conn:
        cur = conn.cursor()
        cur.execute(
            f"SELECT {column.key_column}, {column.value_column} FROM {column.table} "
            f"WHERE {column.value_column} LIKE %s AND {column.value_column} NOT LIKE %s "
            f"LIMIT %s FOR UPDATE SKIP LOCKED",
            (PREFIX + "%", not_primary, batch_size))
        rows = cur.fetchall()
        for key, value in rows:
            cur.execute(f"UPDATE {column.table} SET {column.value_column} = %s WHERE {column.key_column} = %s",
                        (ring.rotate(value), key))
    return len(rows)
