"""Security incidents from the audit log (notifications.security_alerts, every 15 minutes).

The audit log is read after a watermark (sign-ins, failed sign-ins, privilege changes); each
pattern opens one incident through domain/alerts.py, which tells the alert audience once:

* ``security.failed_login_burst``: at least ``failed_logins`` failed sign-ins within
  ``window_seconds`` for one account (subject ``user <id>``), or from one address (subject
  ``address <ip>``) counting only accounts that had no burst of their own (twenty failures for
  one account from one address are one incident, not two). While it stays open, later
  failures count on it; an incident whose subject has had no failure for ``quiet_seconds``
  resolves (one resolution notice), so the next burst is a new incident.
* ``security.privilege_escalation``: a user created as, or changed to, a superadmin, or a token
  created with a scope that manages users, tokens, tenants or the audit log. One incident per
  event (its audit id is in the subject); an operator closes it (`lamplighter alerts resolve ID`).
* ``security.admin_new_address``: a superadmin signed in from an address it had not signed in
  from in ``new_address_days`` days; one incident per user and address, closed by an operator.

A batch of events and the watermark that passes it commit together; a run killed half-way and
run again opens nothing twice. The first run starts with the events of the last
``FIRST_LOOKBACK_SECONDS``, not with the whole audit log.
"""
from __future__ import annotations

from dataclasses import dataclass

from domain import alerts
from storage import security_alerts as events
from storage import watermarks
from storage.audit import AuditEntry
from storage.queries import transaction

WATERMARK = "notifications.security_alerts"
FIRST_LOOKBACK_SECONDS = 3600
BURST_RULE = "security.failed_login_burst"
ESCALATION_RULE = "security.privilege_escalation"
NEW_ADDRESS_RULE = "security.admin_new_address"
PRIVILEGED_ROLES = {"superadmin"}
PRIVILEGED_SCOPES = {"users", "tokens", "tenants", "audit"}


@dataclass(frozen=True)
class Thresholds:
    failed_logins: int = 10
    window_seconds: int = 300
    quiet_seconds: int = 3600
    new_address_days: int = 30


def scan(*, thresholds: Thresholds = Thresholds(), settle_seconds: float = 5.0, batch_size: int = 1000,
         max_batches: int = 20, audience: alerts.Audience | None = None) -> dict[str, int]:
    """Look for incidents in the events after the watermark; counts for the job's history row."""
    counts = {"events": 0, "opened": 0, "touched": 0, "resolved": 0}
    position = watermarks.get(WATERMARK, first=lambda: events.start_position(FIRST_LOOKBACK_SECONDS))
    for _ in range(max_batches):
        batch = events.events_after(position, settle_seconds=settle_seconds, limit=batch_size)
        if not batch:
            break
        with transaction():
            for rule, subject, details in incidents(batch, thresholds):
                touch = alerts.open_or_touch(rule, subject, details, audience=audience)
                counts["opened" if touch.opened else "touched"] += 1
            position = batch[-1].id
            watermarks.set_position(WATERMARK, position)
        counts["events"] += len(batch)
    counts["resolved"] = _resolve_quiet_bursts(thresholds, audience)
    return counts


def incidents(batch: list[AuditEntry], thresholds: Thresholds) -> list[tuple[str, tuple[str, str], dict]]:
    """The incidents a batch of events shows: (rule, subject, details)."""
    found: list[tuple[str, tuple[str, str], dict]] = []
    failed = [e for e in batch if e.action == "user.sign_in_failed"]
    window = thresholds.window_seconds
    bursts: list[str] = []
    for user_id in sorted({e.target_id for e in failed if e.target_type == "user" and e.target_id}, key=str):
        until = max(e.at for e in failed if e.target_id == user_id)
        failures = events.failed_logins_for_account(user_id, until=until, window_seconds=window)
        if failures >= thresholds.failed_logins:
            bursts.append(user_id)
            found.append((BURST_RULE, ("user", user_id), {"failures": failures, "window_s": window,
                                                          "last_at": until.isoformat()}))
    for source in sorted({e.source_address for e in failed if e.source_address}):
        until = max(e.at for e in failed if e.source_address == source)
        failures, accounts = events.failed_logins_from_address(source, until=until, window_seconds=window,
                                                               burst_accounts=bursts)
        if failures >= thresholds.failed_logins:
            found.append((BURST_RULE, ("address", source), {"failures": failures, "accounts": accounts,
                                                            "window_s": window, "last_at": until.isoformat()}))
    for event in batch:
        if _escalates(event):
            found.append((ESCALATION_RULE, (event.target_type or "audit", f"{event.target_id} (audit {event.id})"), {
                "action": event.action, "by": event.actor, "at": event.at.isoformat(), "tenant_id": event.tenant_id,
                "role": event.details.get("role"), "scopes": event.details.get("scopes")}))
        elif event.action == "user.signed_in" and event.source_address and _new_admin_address(event, thresholds):
            found.append((NEW_ADDRESS_RULE, ("user", f"{event.target_id} from {event.source_address}"), {
                "at": event.at.isoformat(), "address": event.source_address,
                "not_seen_in_days": thresholds.new_address_days}))
    return found


def _escalates(event: AuditEntry) -> bool:
    if event.action in ("user.created", "user.role_changed"):
        return event.details.get("role") in PRIVILEGED_ROLES
    if event.action == "token.created":
        return bool(PRIVILEGED_SCOPES & set(event.details.get("scopes") or ()))
    return False


def _new_admin_address(event: AuditEntry, thresholds: Thresholds) -> bool:
    user = events.user_role(str(event.target_id or ""))
    if user is None or user[0] not in PRIVILEGED_ROLES:
        return False
    return not events.address_seen_before(str(event.target_id), event.source_address, before=event.at,
                                          days=thresholds.new_address_days, event_id=event.id)


def _resolve_quiet_bursts(thresholds: Thresholds, audience) -> int:
    resolved = 0
    for alert in alerts.list_alerts(open_only=True, limit=10_000):
        if alert.rule != BURST_RULE:
            continue
        if not events.recent_failed_login(alert.subject_kind, alert.subject, quiet_seconds=thresholds.quiet_seconds):
            resolved += alerts.resolve(BURST_RULE, (alert.subject_kind, alert.subject), audience=audience) is not None
    return resolved
