"""The settings of the newer areas, each checked so that a typo stops start-up with the variable's
name: outbound calls' allow-list, the file store, SMTP and who hears about alerts. Read by
storage/settings.py's ``load``; kept apart so that module stays a readable size."""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from storage.notifications import RECIPIENT_KINDS
from storage.settings import (AlertSettings, BillingSettings, DocumentSettings, SettingsError, SmtpSettings,
                              WebhookSettings, _boolean, _choice, _number, redact_url)


def outbound_allow_entries(raw: str | Iterable[str]) -> tuple[str, ...]:
    """LAMPLIGHTER_OUTBOUND_ALLOW's entries (comma-separated, or already split): host names,
    addresses and networks; anything else is a SettingsError naming the variable."""
    import ipaddress

    entries = tuple(e.strip() for e in (raw.split(",") if isinstance(raw, str) else raw) if e.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry.strip("[]"), strict=False)
            continue
        except ValueError:
            pass
        labels = entry.rstrip(".").split(".")
        if len(entry) > 253 or not all(0 < len(label) <= 63 and label.isascii()
                                       and label.replace("-", "").replace("_", "").isalnum() for label in labels):
            raise SettingsError(f"LAMPLIGHTER_OUTBOUND_ALLOW: {entry!r} is neither a host name nor an address "
                                "or network (e.g. hooks.internal, 127.0.0.1, 10.1.0.0/16)")
    return entries


def s3_endpoint(raw: str) -> str:
    url = raw.strip().rstrip("/")
    if url and not re.match(r"^https?://[^/]+", url):
        raise SettingsError(f"LAMPLIGHTER_FILES_S3_ENDPOINT={redact_url(url)!r}: expected http(s)://host[:port]")
    return url


_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def files_url(raw: str) -> str:
    """file:///absolute/path or s3://bucket[/prefix]; checked here so a typo stops start-up."""
    from urllib.parse import urlsplit

    url = raw.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SettingsError(f"LAMPLIGHTER_FILES_URL={redact_url(url)!r}: expected file:///absolute/path")
        return url
    if parts.scheme == "s3":
        if not _S3_BUCKET.match(parts.netloc):
            raise SettingsError(f"LAMPLIGHTER_FILES_URL={redact_url(url)!r}: expected s3://bucket/prefix "
                                "(bucket: 3-63 lowercase letters, digits, '.', '-')")
        if any(segment in (".", "..") for segment in parts.path.split("/")) or parts.query or parts.fragment:
            raise SettingsError(f"LAMPLIGHTER_FILES_URL={redact_url(url)!r}: the prefix may not hold '.', '..', "
                                "a query or a fragment")
        return url
    raise SettingsError(f"LAMPLIGHTER_FILES_URL={redact_url(url)!r}: expected file:///path or s3://bucket/prefix")
_EMAIL_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def smtp(env: Mapping[str, str]) -> SmtpSettings:
    from urllib.parse import parse_qs, unquote, urlsplit

    raw = env.get("LAMPLIGHTER_SMTP_URL", "").strip()
    sender = env.get("LAMPLIGHTER_SMTP_FROM", "").strip()
    if sender and not _EMAIL_ADDRESS.match(sender.rsplit("<", 1)[-1].rstrip(">").strip()):
        raise SettingsError(f"LAMPLIGHTER_SMTP_FROM={sender!r}: expected an e-mail address (or Name <address>)")
    if not raw:
        return SmtpSettings(from_address=sender)
    shown = redact_url(raw)
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise SettingsError(f"LAMPLIGHTER_SMTP_URL={shown!r}: not a URL (smtp://user:password@host:port)") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingsError(f"LAMPLIGHTER_SMTP_URL={shown!r}: expected smtp://[user:password@]host[:port] "
                            "or smtps://...")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls"}
    if unknown:
        raise SettingsError(f"LAMPLIGHTER_SMTP_URL={shown!r}: unknown parameter(s) {', '.join(sorted(unknown))} "
                            "(only starttls=0|1)")
    starttls = _boolean({"LAMPLIGHTER_SMTP_URL starttls": query.get("starttls", "")},
                        "LAMPLIGHTER_SMTP_URL starttls", parts.scheme == "smtp")
    implicit_tls = parts.scheme == "smtps"
    if implicit_tls and starttls:
        raise SettingsError(f"LAMPLIGHTER_SMTP_URL={shown!r}: smtps:// is TLS already; starttls does not apply")
    if not sender:
        raise SettingsError("LAMPLIGHTER_SMTP_FROM: required with LAMPLIGHTER_SMTP_URL (the sender's address)")
    return SmtpSettings(url=shown, from_address=sender, host=parts.hostname, port=port or (465 if implicit_tls else 587),
                        username=unquote(parts.username or ""), password=unquote(parts.password or ""),
                        implicit_tls=implicit_tls, starttls=starttls)


def recipient_spec(raw: str, variable: str) -> tuple[str, str]:
    """``kind:value`` (role:superadmin, user:42, address:ops@example.org) as (kind, value)."""
    kind, _, value = raw.strip().partition(":")
    if kind not in RECIPIENT_KINDS or not value.strip():
        raise SettingsError(f"{variable}: {raw.strip()!r} is not a recipient (expected kind:value, kind one of "
                            f"{', '.join(RECIPIENT_KINDS)}; e.g. role:superadmin)")
    return kind, value.strip()


def alerts(env: Mapping[str, str]) -> AlertSettings:
    raw = env.get("LAMPLIGHTER_ALERT_RECIPIENTS", "").strip()
    if not raw:
        recipients = AlertSettings.recipients
    elif raw.lower() == "none":
        recipients = ()
    else:
        recipients = tuple(":".join(recipient_spec(item, "LAMPLIGHTER_ALERT_RECIPIENTS"))
                           for item in raw.split(",") if item.strip())
    webhook_url = env.get("LAMPLIGHTER_ALERT_WEBHOOK_URL", "").strip()
    if webhook_url and not re.match(r"^https?://[^/\s]+", webhook_url):
        raise SettingsError("LAMPLIGHTER_ALERT_WEBHOOK_URL: expected an http(s):// URL")
    return AlertSettings(recipients=recipients, webhook_url=webhook_url,
                         webhook_format=_choice(env, "LAMPLIGHTER_ALERT_WEBHOOK_FORMAT", "json", ("json", "slack")))


def documents(env: Mapping[str, str]) -> DocumentSettings:
    return DocumentSettings(
        max_documents=_number(env, "LAMPLIGHTER_DOCUMENTS_MAX_DOCUMENTS", DocumentSettings.max_documents, kind=int),
        max_bytes=_number(env, "LAMPLIGHTER_DOCUMENTS_MAX_BYTES", DocumentSettings.max_bytes, kind=int),
        retention_days=_number(env, "LAMPLIGHTER_DOCUMENTS_RETENTION_DAYS", DocumentSettings.retention_days, kind=int,
                               minimum=1))


def billing(env: Mapping[str, str]) -> BillingSettings:
    url = env.get("LAMPLIGHTER_BILLING_URL", "").strip()
    if url and not re.match(r"^https?://[^/]+", url):
        raise SettingsError(f"LAMPLIGHTER_BILLING_URL={redact_url(url)!r}: expected http(s)://host[:port]/path")
    return BillingSettings(url=url, token=env.get("LAMPLIGHTER_BILLING_TOKEN", "").strip())


def webhooks(env: Mapping[str, str]) -> WebhookSettings:
    return WebhookSettings(concurrency_per_endpoint=_number(env, "LAMPLIGHTER_WEBHOOKS_CONCURRENCY", 4, kind=int,
                                                            minimum=1))
