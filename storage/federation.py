"""Federation keys, rotations and documents (queries in sql/federation.sql; migration 0019).

Private keys are stored only as storage/encryption.py values (``enc:v1:...``), encrypted by the
caller; this module never sees them in the clear. The column is registered for
``maintenance.rotate_encryption_keys``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage import encryption
from storage.queries import queries, rows, runner

SQL = queries("federation")
execute = runner("federation")

KEY_SETS = ("federation", "protocol")
PUBLISHED_STATES = ("next", "active", "retired")

encryption.ENCRYPTED_COLUMNS.append(encryption.EncryptedColumn("lamplighter.federation_keys", "id", "private_jwk"))


@dataclass(frozen=True)
class StoredKey:
    key_set: str
    kid: str
    alg: str
    public_jwk: dict
    state: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    removed_at: datetime | None


@dataclass(frozen=True)
class Rotation:
    id: int
    key_set: str
    status: str
    next_step: str
    next_step_at: datetime
    old_kid: str
    new_kid: str
    waiting_for: str | None
    started_by: str
    started_at: datetime
    promoted_at: datetime | None


@dataclass(frozen=True)
class EncryptedKey:
    kid: str
    alg: str
    private_jwk: str  # enc:v1:... (never the clear text)

    def __repr__(self) -> str:
        return f"EncryptedKey(kid={self.kid!r}, alg={self.alg!r})"


def database_now() -> datetime:
    return execute("federation_now").fetchone()[0]


def lock_generation() -> None:
    """Serialize regenerations until the caller's transaction ends (call inside one)."""
    execute("federation_generation_lock")


def insert_key(*, key_set: str, kid: str, alg: str, public_jwk: dict, private_jwk: str, state: str) -> bool:
    """Store a key; False when the set already has a key in that state (or the kid exists)."""
    if not encryption.is_encrypted(private_jwk):
        raise ValueError("federation keys are stored encrypted only")
    found = execute("federation_key_insert", {"key_set": key_set, "kid": kid, "alg": alg,
                                              "public_jwk": json.dumps(public_jwk), "private_jwk": private_jwk,
                                              "state": state}).fetchone()
    return found is not None


def keys(*, with_removed: bool = False) -> list[StoredKey]:
    return [StoredKey(**r) for r in rows(execute("federation_keys_list", {"with_removed": with_removed}))]


def private_key(key_set: str, state: str = "active") -> EncryptedKey | None:
    found = rows(execute("federation_key_private", {"key_set": key_set, "state": state}))
    return EncryptedKey(**found[0]) if found else None


def promote(key_set: str, *, old_kid: str, new_kid: str) -> int:
    return execute("federation_key_promote", {"key_set": key_set, "old_kid": old_kid, "new_kid": new_kid}).rowcount


def remove_key(kid: str) -> bool:
    return execute("federation_key_remove", {"kid": kid}).rowcount == 1


def insert_rotation(*, key_set: str, old_kid: str, new_kid: str, overlap_seconds: float, by: str) -> int | None:
    found = execute("federation_rotation_insert", {"key_set": key_set, "old_kid": old_kid, "new_kid": new_kid,
                                                   "overlap": overlap_seconds, "by": by}).fetchone()
    return found[0] if found else None


def running_rotations() -> list[Rotation]:
    return [Rotation(**r) for r in rows(execute("federation_rotations_running"))]


def claim_due_rotation(skip: list[int] | tuple[int, ...] = ()) -> dict[str, Any] | None:
    """One due rotation not in ``skip``, locked until the caller's transaction ends (call inside one)."""
    found = rows(execute("federation_rotation_claim_due", {"skip": list(skip)}))
    return found[0] if found else None


def rotation_waiting(rotation_id: int, reason: str) -> None:
    execute("federation_rotation_waiting", {"id": rotation_id, "reason": reason})


def rotation_promoted(rotation_id: int, *, overlap_seconds: float) -> None:
    execute("federation_rotation_promoted", {"id": rotation_id, "overlap": overlap_seconds})


def finish_rotation(rotation_id: int, *, status: str, by: str) -> bool:
    return execute("federation_rotation_finish", {"id": rotation_id, "status": status, "by": by}).fetchone() is not None


def insert_documents(*, entity_configuration: str, jwks: dict, signed_jwks: str, signing_kid: str, iat: int,
                     exp: int, keep: int = 100) -> int:
    version = execute("federation_documents_insert", {
        "entity_configuration": entity_configuration, "jwks": json.dumps(jwks), "signed_jwks": signed_jwks,
        "signing_kid": signing_kid, "iat": iat, "exp": exp}).fetchone()[0]
    execute("federation_documents_prune", {"keep": keep})
    return version


def latest_documents() -> dict[str, Any] | None:
    found = rows(execute("federation_documents_latest"))
    return found[0] if found else None


def publish() -> dict[str, int] | None:
    """The newest documents become the published row (generation + 1); None when there are none."""
    found = rows(execute("federation_publish"))
    return found[0] if found else None


def publication(*, conn=None) -> str | None:
    """The published row's publication id; it changes with every refresh."""
    found = execute("federation_publication", conn=conn).fetchone()
    return found[0] if found else None


def published(*, conn=None) -> dict[str, Any] | None:
    found = execute("federation_published", conn=conn).fetchone()
    return found[0] if found else None
