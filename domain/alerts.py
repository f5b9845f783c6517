"""Alerts as incidents: a rule (``jobs.failure_rate``, ``health.database``) firing for a subject
(an actor, a queue, a check, an integration) opens an incident once, counts repeats while it
stays open, and resolves once (README "Alerts").

    open_or_touch("jobs.failure_rate", ("queue", "accounts"), {"failed": 12, "window_s": 900})
    resolve("jobs.failure_rate", ("queue", "accounts"))

Each rule calls :func:`open_or_touch` every time it sees the condition and :func:`resolve` when
it sees it clear; neither needs to remember anything. Opening and resolving notify the alert
audience once each, through the outbox, in the transaction that changes the incident: the
notification's dedupe key carries the incident's id. Concurrent callers are safe: at most one
incident per rule and subject is open (a partial unique index), and the insert that would open a
second one counts a repeat instead.

The audience is a setting (storage/settings.py ``AlertSettings``): e-mail recipients
(``role:superadmin`` by default) and, optionally, a webhook (JSON or Slack's format).
"""
from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass

import structlog

from domain import audit, notifications
from domain.notifications import Recipient
from storage import alerts as alert_rows
from storage import settings as settings_module
from storage.alerts import Alert
from storage.queries import transaction

log = structlog.get_logger("lamplighter.alerts")

_RULE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_SUBJECT_KIND = re.compile(r"^[a-z0-9_]+$")


class AlertError(Exception):
    """Base of the alerts domain's errors."""


class InvalidAlert(AlertError):
    """A rule or subject that cannot name an incident."""


class AlertNotFound(AlertError):
    pass


class AlertNotOpen(AlertError):
    pass


@dataclass(frozen=True)
class Subject:
    kind: str  # actor, queue, check, integration, ...
    value: str

    @classmethod
    def of(cls, subject: "Subject | tuple[str, str] | str") -> "Subject":
        """A Subject from itself, a (kind, value) pair, or ``"kind:value"``."""
        if isinstance(subject, Subject):
            return subject
        kind, value = subject if isinstance(subject, tuple) else str(subject).partition(":")[::2]
        if not _SUBJECT_KIND.match(kind or "") or not str(value).strip() or any(c in str(value) for c in "\r\n"):
            raise InvalidAlert(f"subject {subject!r}: expected (kind, value) or 'kind:value', kind in lowercase "
                               "letters, digits and '_', value one non-empty line")
        return cls(kind, str(value).strip())

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class Audience:
    """Who is told: e-mail recipients, and a webhook if one is configured."""

    email: tuple[Recipient, ...] = ()
    webhook_url: str = ""
    webhook_format: str = "json"

    @classmethod
    def from_settings(cls, config: settings_module.AlertSettings | None = None) -> "Audience":
        config = config or settings_module.get().alerts
        return cls(email=tuple(Recipient.parse(spec) for spec in config.recipients),
                   webhook_url=config.webhook_url, webhook_format=config.webhook_format)


@dataclass(frozen=True)
class Touch:
    alert: Alert
    opened: bool  # this call opened the incident (and notified)


def open_or_touch(rule: str, subject: "Subject | tuple[str, str] | str", details: dict | None = None, *,
                  audience: Audience | None = None) -> Touch:
    """Open the incident of ``rule`` for ``subject`` and notify, or count one more firing of the
    open one (latest ``details`` kept; no notification)."""
    if not _RULE.match(rule or ""):
        raise InvalidAlert(f"rule {rule!r}: lowercase words joined by dots, e.g. jobs.failure_rate")
    target = Subject.of(subject)
    if details is not None and not isinstance(details, dict):
        raise InvalidAlert("details must be a dict")
    with transaction():
        alert, opened = alert_rows.open_or_touch(rule, target.kind, target.value, details or {})
        if opened:
            _notify(alert, "opened", audience)
    if opened:
        log.warning("alert_opened", alert_id=alert.id, rule=rule, subject=str(target))
    return Touch(alert=alert, opened=opened)


def resolve(rule: str, subject: "Subject | tuple[str, str] | str", *, audience: Audience | None = None) -> Alert | None:
    """Close the open incident of ``rule`` for ``subject`` and notify; None when none is open."""
    target = Subject.of(subject)
    with transaction():
        alert = alert_rows.resolve(rule, target.kind, target.value, by=f"system:{rule}")
        if alert is not None:
            _notify(alert, "resolved", audience)
    if alert is not None:
        log.info("alert_resolved", alert_id=alert.id, rule=rule, subject=str(target), count=alert.count)
    return alert


def resolve_by_hand(alert_id: int, *, by: str, source: str | None = None, audience: Audience | None = None) -> Alert:
    """An operator closes an open incident (`lamplighter alerts resolve ID`): notified like a
    resolution the rule saw, and audited (``alert.resolved``) in the same transaction."""
    with transaction():
        alert = alert_rows.resolve_by_id(alert_id, by=by)
        if alert is None:
            existing = alert_rows.get(alert_id)
            if existing is None:
                raise AlertNotFound(f"no alert {alert_id}")
            raise AlertNotOpen(f"alert {alert_id} is already resolved (at {existing.resolved_at:%Y-%m-%d %H:%M:%S %Z}"
                               f" by {existing.resolved_by})")
        _notify(alert, "resolved", audience)
        audit.record(by, "alert.resolved", target_type="alert", target_id=alert.id, source=source,
                     details={"rule": alert.rule, "subject": f"{alert.subject_kind}:{alert.subject}",
                              "count": alert.count})
    log.warning("alert_resolved_by_hand", alert_id=alert.id, rule=alert.rule,
                subject=f"{alert.subject_kind} {alert.subject}", by=by)
    return alert


def list_alerts(*, open_only: bool = False, limit: int = 50) -> list[Alert]:
    return alert_rows.list_alerts(open_only=open_only, limit=limit)


# ---- what is said ----------------------------------------------------------------------------

def _notify(alert: Alert, event: str, audience: Audience | None) -> None:
    audience = audience or Audience.from_settings()
    subject, text = message(alert, event)
    targets = [("email", recipient) for recipient in audience.email]
    if audience.webhook_url:
        targets.append(("webhook", Recipient.address(audience.webhook_url)))
    for channel, recipient in targets:
        # One row per incident, event and recipient; the recipient as a digest (a webhook URL is a secret).
        digest = hashlib.sha256(f"{channel}:{recipient}".encode()).hexdigest()[:16]
        notifications.notify(recipient, channel=channel, webhook_format=audience.webhook_format,
                             kind=f"alert.{event}", dedupe_key=f"alert:{alert.id}:{event}:{digest}",
                             subject=subject, text=text, html=f"<pre>{html.escape(text)}</pre>")


def message(alert: Alert, event: str) -> tuple[str, str]:
    """The subject line and text of an incident's notification."""
    about = f"{alert.rule} on {alert.subject_kind} {alert.subject}"
    details = "\n".join(f"  {key}: {json.dumps(value, default=str)}" for key, value in sorted(alert.details.items()))
    if event == "opened":
        text = (f"Alert {alert.id} opened at {alert.opened_at:%Y-%m-%d %H:%M:%S %Z}: rule {alert.rule} fired for "
                f"{alert.subject_kind} {alert.subject}.\n"
                + (f"\nWhat it saw:\n{details}\n" if details else "")
                + f"\nIt stays open, counting repeats, until the rule sees it clear or an operator closes it "
                  f"(`lamplighter alerts resolve {alert.id}`).")
        return f"Alert: {about}", text
    text = (f"Alert {alert.id} ({about}) resolved at {alert.resolved_at:%Y-%m-%d %H:%M:%S %Z} by "
            f"{alert.resolved_by}, after {alert.count} firing(s) since {alert.opened_at:%Y-%m-%d %H:%M:%S %Z}.")
    return f"Resolved: {about}", text
