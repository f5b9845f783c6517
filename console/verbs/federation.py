"""`lamplighter federation keys|rotate|verify`: OpenID Federation publishing (domain/federation*.py).

`keys` shows each key's state and each running rotation's next step and its time (and what it
waits for); `rotate --protocol|--federation` starts a rotation, `rotate ... --abort` stops one
before its promotion; `verify` fetches the served documents and checks them, exit 1 with the
reason when they are not what the database says is published."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from datetime import datetime

from console import cli

KEY_COLUMNS = ["key_set", "kid", "alg", "state", "created_at", "activated_at", "retired_at"]
ROTATION_COLUMNS = ["key_set", "next_step", "next_step_at", "new_kid", "old_kid", "waiting_for", "started_by"]


def register(verbs) -> None:
    f = verbs.add_parser("federation", help="OpenID Federation keys: list, rotate, verify what is served")
    actions = f.add_subparsers(dest="federation_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    k = actions.add_parser("keys", help="each key's state, and each running rotation's next step")
    k.add_argument("--all", action="store_true", help="removed keys too")
    k.add_argument("--json", action="store_true")
    k.set_defaults(run=cmd_keys)
    r = actions.add_parser("rotate", help="start (or --abort) a key rotation of one set")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--protocol", dest="key_set", action="store_const", const="protocol",
                       help="the identity service's keys (jwks.json)")
    which.add_argument("--federation", dest="key_set", action="store_const", const="federation",
                       help="the Federation Entity Keys (the entity configuration's jwks)")
    r.add_argument("--abort", action="store_true", help="stop the running rotation before its promotion")
    r.set_defaults(run=cmd_rotate)
    v = actions.add_parser("verify", help="fetch the served documents and check signatures, kids, exp and keys")
    v.add_argument("--url", help="where the web process serves them (default: the entity identifier)")
    v.set_defaults(run=cmd_verify)


@dataclass(frozen=True)
class KeyRow:
    key_set: str
    kid: str
    alg: str
    state: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    removed_at: datetime | None


@dataclass(frozen=True)
class RotationRow:
    key_set: str
    next_step: str
    next_step_at: datetime
    new_kid: str
    old_kid: str
    waiting_for: str | None
    started_by: str
    started_at: datetime


def overview(*, with_removed: bool = False) -> dict[str, list]:
    """Keys (public facts only) and running rotations: what `federation keys` prints."""
    from storage import federation as rows

    return {"keys": [KeyRow(key_set=k.key_set, kid=k.kid, alg=k.alg, state=k.state, created_at=k.created_at,
                            activated_at=k.activated_at, retired_at=k.retired_at, removed_at=k.removed_at)
                     for k in rows.keys(with_removed=with_removed)],
            "rotations": [RotationRow(key_set=r.key_set, next_step=r.next_step, next_step_at=r.next_step_at,
                                      new_kid=r.new_kid, old_kid=r.old_kid, waiting_for=r.waiting_for,
                                      started_by=r.started_by, started_at=r.started_at)
                          for r in rows.running_rotations()]}


def cmd_keys(args, settings) -> int:
    view = overview(with_removed=args.all)
    if args.json:
        cli.print_json({name: [asdict(row) for row in rows] for name, rows in view.items()})
        return 0
    print(cli.table(view["keys"], KEY_COLUMNS))
    print()
    print("rotations:" if view["rotations"] else "rotations: (none running)")
    if view["rotations"]:
        print(cli.table(view["rotations"], ROTATION_COLUMNS))
    return 0


def _publish(settings):
    from domain import federation

    return lambda: federation.publish(settings.federation)


def cmd_rotate(args, settings) -> int:
    from domain import federation, federation_rotation

    try:
        federation.require_configured(settings.federation)
    except federation.FederationNotConfigured as exc:
        print(f"lamplighter federation: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    if args.abort:
        rotation = federation_rotation.abort(args.key_set, by=cli.operator(), publish=_publish(settings))
        print(f"{args.key_set} rotation {rotation.id} aborted; {rotation.new_kid} removed, {rotation.old_kid} signs on")
        return 0
    rotation = federation_rotation.start(args.key_set, settings.federation, by=cli.operator(),
                                         publish=_publish(settings))
    print(f"{args.key_set} rotation {rotation.id} started: {rotation.new_kid} published as next; "
          f"promoted from {rotation.next_step_at.isoformat(timespec='seconds')}")
    return 0


def cmd_verify(args, settings) -> int:
    from actors.federation import fetch
    from domain import federation_verify
    from domain.outcomes import JobOutcome
    from storage import federation as rows

    now = int(rows.database_now().timestamp())
    try:
        passed = federation_verify.verify_served(settings.federation, lambda url: fetch(url, guarded=False),
                                                 args.url or settings.federation.entity_id, now)
    except (federation_verify.VerificationFailed, JobOutcome) as exc:
        print(f"lamplighter federation verify: FAILED: {exc}", file=sys.stderr)
        return cli.EXIT_FAILURE
    for line in passed:
        print(f"ok  {line}")
    return 0
