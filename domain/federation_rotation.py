"""Key rotation as a persisted workflow (lamplighter.federation_rotations), one set at a time:

1. ``start`` (`lamplighter federation rotate --protocol|--federation`): a ``next`` key is created
   and published (in jwks.json, or in the entity configuration's ``jwks``); the old key signs on.
2. ``promote``, after the overlap: the next key becomes ``active`` and signs; the old one is
   ``retired`` — still published, no longer used. A Federation Entity Key is promoted only once
   the superior's Subordinate Statement lists it, when a trust anchor URL is configured; until
   then the rotation says what it waits for.
3. ``remove``, after a second overlap: the retired key is unpublished and its private half erased.

``federation.advance_rotations`` takes due steps; each step regenerates the documents and
refreshes the cache (``publish``). The database's clock says when a step is due.
"""
from __future__ import annotations

from typing import Callable

import structlog

from domain import audit
from domain import federation_keys as keys
from domain.errors import Conflict, NotFound
from storage import federation as rows
from storage.queries import transaction
from storage.settings import FederationSettings

log = structlog.get_logger("lamplighter.federation")

Publish = Callable[[], object]
SuperiorKids = Callable[[], set[str]]


def start(key_set: str, settings: FederationSettings, *, by: str, publish: Publish) -> rows.Rotation:
    """Start rotating ``key_set``: its next key is created and published now."""
    with transaction():
        active = rows.private_key(key_set, "active")
        if active is None:
            raise Conflict(f"no active {key_set} key to rotate yet: federation.generate_files creates the first")
        if any(r.key_set == key_set for r in rows.running_rotations()):
            raise Conflict(f"a {key_set} key rotation is already running (`lamplighter federation keys`)")
        new_kid = keys.create_key(key_set, settings, state="next")
        rotation_id = new_kid and rows.insert_rotation(key_set=key_set, old_kid=active.kid, new_kid=new_kid,
                                                       overlap_seconds=settings.rotation_overlap, by=by)
        if not rotation_id:
            raise Conflict(f"a {key_set} key rotation was started at the same time")
        audit.record(by, "federation_rotation.started", target_type="federation_key_set", target_id=key_set,
                     details={"rotation": rotation_id, "old_kid": active.kid, "new_kid": new_kid})
    log.info("federation_rotation_started", key_set=key_set, old_kid=active.kid, new_kid=new_kid, by=by)
    publish()
    return next(r for r in rows.running_rotations() if r.id == rotation_id)


def advance(settings: FederationSettings, *, publish: Publish, superior_kids: SuperiorKids | None = None,
            max_steps: int = 10) -> dict[str, int]:
    """Take every due step (up to ``max_steps``); counts of what was done and what waits."""
    done = {"promoted": 0, "removed": 0, "waiting": 0}
    waited: set[int] = set()
    for _ in range(max_steps):
        with transaction():
            due = rows.claim_due_rotation(skip=sorted(waited))  # a waiting one stays due: not twice a run
            if due is None:
                break
            step = _step(due, settings, superior_kids)
            if step == "waiting":
                waited.add(due["id"])
        done[step] += 1
        if step != "waiting":
            publish()
    return done


def _step(due: dict, settings: FederationSettings, superior_kids: SuperiorKids | None) -> str:
    if due["next_step"] == "promote":
        if due["key_set"] == "federation" and settings.trust_anchor_url:
            reason = _not_listed(due["new_kid"], settings, superior_kids)
            if reason:
                rows.rotation_waiting(due["id"], reason)
                log.info("federation_rotation_waiting", key_set=due["key_set"], new_kid=due["new_kid"], reason=reason)
                return "waiting"
        rows.promote(due["key_set"], old_kid=due["old_kid"], new_kid=due["new_kid"])
        rows.rotation_promoted(due["id"], overlap_seconds=settings.rotation_overlap)
        log.info("federation_key_promoted", key_set=due["key_set"], new_kid=due["new_kid"], retired=due["old_kid"])
        return "promoted"
    rows.remove_key(due["old_kid"])
    rows.finish_rotation(due["id"], status="completed", by="federation.advance_rotations")
    log.info("federation_key_removed", key_set=due["key_set"], kid=due["old_kid"])
    return "removed"


def _not_listed(kid: str, settings: FederationSettings, superior_kids: SuperiorKids | None) -> str | None:
    """Why the new Federation Entity Key may not sign yet, or None when the superior lists it."""
    if superior_kids is None:
        return f"cannot check the superior ({settings.trust_anchor_url}) from here"
    try:
        listed = superior_kids()
    except Exception as exc:  # unreachable or malformed: the step waits and says why
        return f"superior {settings.trust_anchor_url} not checked: {exc}"[:500]
    if kid not in listed:
        return f"waiting for the superior {settings.trust_anchor_url} to list {kid} in its subordinate statement"
    return None


def abort(key_set: str, *, by: str, publish: Publish) -> rows.Rotation:
    """Stop the running rotation of ``key_set`` before its promotion: the next key is removed
    and the active one signs on. After the promotion the new key already signs, and the old one
    is removed at its time; that is refused with a Conflict saying so."""
    with transaction():
        running = [r for r in rows.running_rotations() if r.key_set == key_set]
        if not running:
            raise NotFound(f"no {key_set} key rotation is running")
        rotation = running[0]
        if rotation.next_step != "promote":
            raise Conflict(f"the {key_set} rotation is past its promotion ({rotation.new_kid} signs); "
                           f"{rotation.old_kid} is removed at {rotation.next_step_at.isoformat(timespec='seconds')}")
        rows.remove_key(rotation.new_kid)
        rows.finish_rotation(rotation.id, status="aborted", by=by)
        audit.record(by, "federation_rotation.aborted", target_type="federation_key_set", target_id=key_set,
                     details={"rotation": rotation.id, "removed_kid": rotation.new_kid})
    log.info("federation_rotation_aborted", key_set=key_set, removed_kid=rotation.new_kid, by=by)
    publish()
    return rotation
