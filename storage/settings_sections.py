"""The settings of the newer areas, each checked so that a typo stops start-up with the variable's
name: outbound calls' allow-list, the file store, SMTP and who hears about alerts. Read by
storage/settings.py's ``load``; kept apart so that module stays a readable size."""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from storage.notifications import RECIPIENT_KINDS
from storage.settings import (AlertSettings, DatabaseSettings, FederationSettings, IntegrationSettings, OperationsSettings,
                              ReportSettings, SettingsError, SmtpSettings, WebSettings, _boolean, _choice, _number,
                              normalize_database_url, redact_url)
from storage.settings import BillingSettings, DocumentSettings, WebhookSettings


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


def reports(env: Mapping[str, str]) -> ReportSettings:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = env.get("LAMPLIGHTER_REPORTS_ZONE", "").strip() or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise SettingsError(f"LAMPLIGHTER_REPORTS_ZONE={zone!r}: not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
    return ReportSettings(zone=zone)


def operations(env: Mapping[str, str]) -> OperationsSettings:
    """LAMPLIGHTER_HEALTH_*, _PERF_*, _BACKUP_* and _OPTIMIZE_*: the operations jobs."""
    d = OperationsSettings()
    scratch = env.get("LAMPLIGHTER_BACKUP_SCRATCH_URL", "").strip()
    if scratch:
        try:
            scratch = normalize_database_url(scratch)
        except SettingsError:
            raise SettingsError(f"LAMPLIGHTER_BACKUP_SCRATCH_URL={redact_url(scratch)!r}: expected a "
                                "postgresql:// URL") from None
    lock_timeout = _number(env, "LAMPLIGHTER_OPTIMIZE_LOCK_TIMEOUT", d.optimize_lock_timeout, minimum=0.01)
    if lock_timeout > 1.0:
        # Workers queue behind a statement waiting for a lock: they must never wait longer than this.
        raise SettingsError(f"LAMPLIGHTER_OPTIMIZE_LOCK_TIMEOUT={lock_timeout:g}: at most 1 second")
    return OperationsSettings(
        health_interval=_number(env, "LAMPLIGHTER_HEALTH_INTERVAL", d.health_interval, minimum=1.0),
        health_queue_lag=_number(env, "LAMPLIGHTER_HEALTH_QUEUE_LAG", d.health_queue_lag, minimum=1.0),
        health_min_free_bytes=_number(env, "LAMPLIGHTER_HEALTH_MIN_FREE_BYTES", d.health_min_free_bytes, kind=int),
        health_retention=_number(env, "LAMPLIGHTER_HEALTH_RETENTION", d.health_retention, minimum=3600.0),
        perf_retention=_number(env, "LAMPLIGHTER_PERF_RETENTION", d.perf_retention, minimum=3600.0),
        backup_keep_daily=_number(env, "LAMPLIGHTER_BACKUP_KEEP_DAILY", d.backup_keep_daily, kind=int, minimum=1),
        backup_keep_monthly=_number(env, "LAMPLIGHTER_BACKUP_KEEP_MONTHLY", d.backup_keep_monthly, kind=int),
        backup_scratch_url=scratch,
        backup_pg_bin_dir=env.get("LAMPLIGHTER_BACKUP_PG_BIN_DIR", "").strip(),
        backup_lock_wait_timeout=_number(env, "LAMPLIGHTER_BACKUP_LOCK_WAIT_TIMEOUT", d.backup_lock_wait_timeout,
                                         minimum=1.0),
        optimize_reindex_ratio=_number(env, "LAMPLIGHTER_OPTIMIZE_REINDEX_RATIO", d.optimize_reindex_ratio),
        optimize_lock_timeout=lock_timeout,
    )


def integrations(env: Mapping[str, str]) -> IntegrationSettings:
    return IntegrationSettings(
        refresh_lead=_number(env, "LAMPLIGHTER_INTEGRATIONS_REFRESH_LEAD", 300.0, minimum=1.0),
        default_token_lifetime=_number(env, "LAMPLIGHTER_INTEGRATIONS_DEFAULT_TOKEN_LIFETIME", 3600.0, minimum=1.0),
        index_page_size=_number(env, "LAMPLIGHTER_INTEGRATIONS_INDEX_PAGE_SIZE", 1000, kind=int, minimum=1),
        index_pages_per_run=_number(env, "LAMPLIGHTER_INTEGRATIONS_INDEX_PAGES_PER_RUN", 20, kind=int, minimum=1))


def database(env: Mapping[str, str]) -> DatabaseSettings:
    d = DatabaseSettings
    return DatabaseSettings(
        statement_timeout_web=_number(env, "LAMPLIGHTER_STATEMENT_TIMEOUT_WEB", d.statement_timeout_web),
        statement_timeout_scheduler=_number(env, "LAMPLIGHTER_STATEMENT_TIMEOUT_SCHEDULER",
                                            d.statement_timeout_scheduler),
        statement_timeout_worker=_number(env, "LAMPLIGHTER_STATEMENT_TIMEOUT_WORKER", d.statement_timeout_worker),
        read_url=normalize_database_url(env.get("LAMPLIGHTER_READ_DATABASE_URL", ""), "LAMPLIGHTER_READ_DATABASE_URL"))


def web(env: Mapping[str, str]) -> WebSettings:
    return WebSettings(
        pool_size=_number(env, "LAMPLIGHTER_WEB_POOL_SIZE", WebSettings.pool_size, kind=int, minimum=1),
        pool_timeout=_number(env, "LAMPLIGHTER_WEB_POOL_TIMEOUT", WebSettings.pool_timeout, minimum=0.1),
        max_body_bytes=_number(env, "LAMPLIGHTER_WEB_MAX_BODY_BYTES", WebSettings.max_body_bytes, kind=int,
                               minimum=1024),
        shutdown_timeout=_number(env, "LAMPLIGHTER_WEB_SHUTDOWN_TIMEOUT", WebSettings.shutdown_timeout, minimum=0.0))
# The documents are regenerated daily (federation.generate_files at 02:00): a statement must outlive
# three regenerations, so two failed nights in a row still never serve an expired one.
FEDERATION_REGENERATION_INTERVAL = 86400.0


def _https_url(raw: str, variable: str) -> str:
    from urllib.parse import urlsplit

    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"{variable}={url!r}: expected an https:// URL without query or fragment")
    return url


def federation(env: Mapping[str, str]) -> FederationSettings:
    import json

    entity_id = env.get("LAMPLIGHTER_FEDERATION_ENTITY_ID", "").strip()
    entity_id = _https_url(entity_id, "LAMPLIGHTER_FEDERATION_ENTITY_ID") if entity_id else ""
    hints = tuple(_https_url(h, "LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS")
                  for h in env.get("LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS", "").split(",") if h.strip())
    anchor_url = env.get("LAMPLIGHTER_FEDERATION_TRUST_ANCHOR_URL", "").strip()
    anchor_url = _https_url(anchor_url, "LAMPLIGHTER_FEDERATION_TRUST_ANCHOR_URL") if anchor_url else ""
    trust_anchor = _boolean(env, "LAMPLIGHTER_FEDERATION_TRUST_ANCHOR", False)
    if trust_anchor and (hints or anchor_url):
        raise SettingsError("LAMPLIGHTER_FEDERATION_TRUST_ANCHOR: a trust anchor has no superior (unset "
                            "LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS and LAMPLIGHTER_FEDERATION_TRUST_ANCHOR_URL)")
    if anchor_url and not hints:
        hints = (anchor_url,)
    metadata = env.get("LAMPLIGHTER_FEDERATION_METADATA", "").strip() or "{}"
    try:
        parsed = json.loads(metadata)
    except (ValueError, RecursionError):  # not JSON, a number over 4,300 digits, nested too deeply
        raise SettingsError("LAMPLIGHTER_FEDERATION_METADATA: not valid JSON") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise SettingsError("LAMPLIGHTER_FEDERATION_METADATA: expected a JSON object of entity types, e.g. "
                            '{"openid_provider": {"issuer": "https://id.example.org"}}')
    entity_type = env.get("LAMPLIGHTER_FEDERATION_ENTITY_TYPE", "").strip() or "openid_provider"
    if not re.match(r"^[a-z][a-z0-9_]{0,62}$", entity_type) or entity_type == "federation_entity":
        raise SettingsError(f"LAMPLIGHTER_FEDERATION_ENTITY_TYPE={entity_type!r}: expected an entity type such as "
                            "openid_provider or openid_relying_party")
    lifetime = _number(env, "LAMPLIGHTER_FEDERATION_LIFETIME", 72 * 3600.0, minimum=1.0)
    if lifetime < 3 * FEDERATION_REGENERATION_INTERVAL:
        raise SettingsError(f"LAMPLIGHTER_FEDERATION_LIFETIME={lifetime:g}: must be at least three regeneration "
                            f"intervals ({3 * FEDERATION_REGENERATION_INTERVAL:g} s), so failed nights never "
                            "serve an expired statement")
    max_age = _number(env, "LAMPLIGHTER_FEDERATION_MAX_AGE", 3600.0)
    if max_age >= lifetime:
        raise SettingsError("LAMPLIGHTER_FEDERATION_MAX_AGE: must be below LAMPLIGHTER_FEDERATION_LIFETIME")
    overlap = _number(env, "LAMPLIGHTER_FEDERATION_ROTATION_OVERLAP", 72 * 3600.0)
    if overlap < max_age:
        raise SettingsError("LAMPLIGHTER_FEDERATION_ROTATION_OVERLAP: must be at least LAMPLIGHTER_FEDERATION_MAX_AGE "
                            "(a verifier's cached key set must have seen a key before it signs or goes)")
    return FederationSettings(
        entity_id=entity_id, authority_hints=hints, trust_anchor=trust_anchor, trust_anchor_url=anchor_url,
        entity_type=entity_type, metadata=json.dumps(parsed, sort_keys=True),
        key_alg=_choice(env, "LAMPLIGHTER_FEDERATION_KEY_ALG", "es256", ("es256", "rs256", "ps256")).upper(),
        rsa_bits=_number(env, "LAMPLIGHTER_FEDERATION_RSA_BITS", 2048, kind=int, minimum=2048),
        lifetime=lifetime, max_age=max_age, rotation_overlap=overlap,
        write_files=_boolean(env, "LAMPLIGHTER_FEDERATION_WRITE_FILES", False))


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
