"""Standard Webhooks signatures (https://www.standardwebhooks.com), for senders and receivers.

A message carries ``webhook-id`` (the same on every attempt), ``webhook-timestamp`` (Unix
seconds of this attempt) and ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``, one per secret while a secret rotates. Secrets are ``whsec_`` and
the base64 of the key. The older scheme, ``X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the
body>`` keyed with the whole secret string, is added for endpoints that ask for it.

Receivers: :func:`verify` (README "Webhooks" has a standalone snippet).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Mapping

PREFIX = "whsec_"
TOLERANCE = 5 * 60  # seconds a receiver accepts between the timestamp and its clock


class InvalidSignature(Exception):
    pass


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(PREFIX):])


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` of one message under one secret."""
    digest = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: list[str], message_id: str, timestamp: int, body: bytes, *,
            legacy: bool = False) -> dict[str, str]:
    """The headers of one attempt, signed with every secret given (the current one first)."""
    out = {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
           "webhook-signature": " ".join(sign(s, message_id, timestamp, body) for s in secrets_),
           "content-type": "application/json"}
    if legacy:
        out["X-Webhook-Signature"] = "sha256=" + hmac.new(secrets_[0].encode(), body, hashlib.sha256).hexdigest()
    return out


def verify(secret: str, headers_: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance: int = TOLERANCE) -> None:
    """Raise InvalidSignature unless one of the message's signatures is ``secret``'s and its
    timestamp is within ``tolerance`` seconds of ``now``."""
    lowered = {k.lower(): v for k, v in headers_.items()}
    message_id, stamp, given = (lowered.get("webhook-id"), lowered.get("webhook-timestamp"),
                                lowered.get("webhook-signature"))
    if not message_id or not stamp or not given:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not a whole number") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignature("webhook-timestamp too far from now")
    expected = sign(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in given.split(" ")):
        raise InvalidSignature("no matching signature")
