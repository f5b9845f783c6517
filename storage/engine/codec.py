"""Messages in and out of the queue table: dramatiq's message JSON, checked at send time and
decoded defensively at claim time (a malformed row is rejected with its reason, never run)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from dramatiq.common import current_millis
from dramatiq.message import Message

class PayloadError(ValueError):
    """A message cannot be sent: not JSON-serialisable, too large, or bad options."""


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_message(message: Message, max_bytes: int) -> str:
    """dramatiq's message as compact JSON text, checked at send time rather than in the worker.

    JSON policy: only JSON types (str, int, float, bool, None, list, dict with str keys).
    datetime, UUID and Decimal are refused here with a clear message; send ``.isoformat()``,
    ``str(uuid)`` or ``str(decimal)``.
    """
    return checked_payload(message.actor_name, message.asdict(), max_bytes)


def checked_payload(actor_name: str, data: Any, max_bytes: int) -> str:
    """Compact JSON of ``data``, refused with a PayloadError if ``data`` is not JSON or the
    text is over ``max_bytes``."""
    try:
        text = _COMPACT_JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"cannot send {actor_name}: arguments must be JSON (str, int, float, bool, None, "
            f"list, dict); {exc}. Convert datetimes with .isoformat(), UUIDs and Decimals with str()."
        ) from None
    if len(text) * 4 > max_bytes and len(text.encode()) > max_bytes:  # UTF-8: at most 4 bytes a char
        raise PayloadError(
            f"cannot send {actor_name}: message is {len(text.encode())} bytes, over the "
            f"{max_bytes}-byte limit (LAMPLIGHTER_MAX_PAYLOAD_BYTES); store large data in a table "
            "and pass its id"
        )
    return text


# json.dumps([args, kwargs], sort_keys=True, default=str), hashed: one per claimed job. The C
# encoder is built once here; JSONEncoder.encode builds one (and a dict for cycle checks) per
# call, half of the digest's cost. Without the cycle check: decoded JSON has no cycles. The same
# text (tests/unit/test_codec.py compares the two).
_DIGEST_ENCODER = json.JSONEncoder(sort_keys=True, default=str)
_digest_chunks = (json.encoder.c_make_encoder(None, str, json.encoder.encode_basestring_ascii, None, ": ", ", ",
                                               True, False, True)
                  if json.encoder.c_make_encoder is not None else None)  # None without the C accelerator


def _digest_text(value: Any) -> str:
    if _digest_chunks is None:
        return _DIGEST_ENCODER.encode(value)
    return "".join(_digest_chunks(value, 0))


def args_digest(message_data: dict) -> str:
    payload = _digest_text([message_data.get("args"), message_data.get("kwargs")])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]



def summarise(result: Any) -> Any:
    """An actor's return value as the history row keeps it: JSON that jsonb accepts (no NaN,
    no NUL, no lone surrogate), at most about 2,000 characters."""
    if result is None:
        return None
    try:
        text = json.dumps(result, default=str, allow_nan=False)
    except (TypeError, ValueError):
        return {"repr": storable(repr(result)[:500])}
    return storable_value(result) if len(text) <= 2000 else {"truncated": storable(text[:2000])}



def first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else ""



def payload_size(text: str, data: Any, max_bytes: int) -> int | None:
    """The message's size when over the limit, measured like encode_message (compact JSON);
    None when within it. jsonb's text form is never shorter, so most rows need no re-dump."""
    if len(text) <= max_bytes // 4 or len(text.encode()) <= max_bytes:
        return None
    size = len(json.dumps(data, separators=(",", ":")).encode())
    return size if size > max_bytes else None


def check_identity(data: dict, message_id: str) -> None:
    # After the actor look-up, so that a row for a newer release's actor waits out its grace.
    if not isinstance(data.get("message_id"), str) or not data["message_id"]:
        raise ValueError("field 'message_id' is missing")
    if data["message_id"] != message_id:
        raise ValueError("field 'message_id' does not match the row's message_id")


def decode(data: Any, message_id: str, queue_name: str) -> Message:
    if not isinstance(data, dict):
        raise ValueError(f"message is a JSON {type(data).__name__}, not an object")
    for key, kind in (("actor_name", str), ("args", list), ("kwargs", dict), ("options", dict)):
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"field {key!r} must be a {kind.__name__}")
    if not isinstance(data.get("actor_name"), str) or not data["actor_name"]:
        raise ValueError("field 'actor_name' is missing")
    options = dict(data.get("options") or {})
    options.pop("eta", None)  # delays live in available_at; dramatiq would hold it in memory
    timestamp = data.get("message_timestamp", current_millis())
    if not isinstance(timestamp, int):
        raise ValueError("field 'message_timestamp' must be an integer")
    return Message(queue_name=queue_name, actor_name=data["actor_name"], args=tuple(data.get("args") or ()),
                   kwargs=dict(data.get("kwargs") or {}), options=options, message_id=message_id,
                   message_timestamp=timestamp)


def storable(text: str) -> str:
    """``text`` as jsonb and PostgreSQL text accept it: a NUL character or a lone surrogate (an
    exception message or a result may hold either) made the whole finish statement fail."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def storable_value(value: Any) -> Any:
    """A JSON value (a result summary) with every string, keys included, made storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_value(v) for v in value]
    return value
