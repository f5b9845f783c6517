"""Key rotation as a persisted workflow, walked with the database's clock moved instead of waited
for: next key published -> promoted (signs; the old one retired, still published, unused) ->
removed after the second overlap. A Federation Entity Key waits for a fake superior on
127.0.0.1 (pytest-httpserver) to list it. Served documents are checked over HTTP with PyJWT."""
import time

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

import actors
from console.verbs import federation as federation_verbs
from domain import errors, federation_keys, federation_rotation
from storage import federation as federation_rows
from tests.cli_runs import run_cli
from tests.conftest import LOOPBACK, wait_for
from tests.federation_support import federation_database, ENTITY_ID, FEDERATION_ENV, kids, served, served_documents, thumbprint

OVERLAP = 72 * 3600
generate_files = actors.federation.generate_files.fn
advance = actors.federation.advance_rotations.fn


def documents(web: str, db_clock) -> dict:
    """The served documents, verified by PyJWT against the database's (moved) clock."""
    return served_documents(web, now=int(db_clock.now().timestamp()))


def cli_environment(monkeypatch, database_url: str, **extra: str) -> None:
    """What `lamplighter` reads: the CLI loads its settings from the environment."""
    for name, value in {**FEDERATION_ENV, "DATABASE_URL": database_url, **extra}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def web():
    with served() as base:
        yield base


def start(key_set: str, settings):
    from domain import federation

    return federation_rotation.start(key_set, settings.federation, by="tests",
                                     publish=lambda: federation.publish(settings.federation))


def signing(documents: dict, key_set: str) -> str:
    """The kid that signs for the set: the served entity configuration's, or the identity
    service's key (it signs tokens, not these documents)."""
    return documents["header"]["kid"] if key_set == "federation" else federation_keys.signer("protocol").kid


def published(documents: dict, key_set: str) -> set[str]:
    return kids(documents["claims"]["jwks"]["keys"] if key_set == "federation" else documents["jwks"]["keys"])


@pytest.mark.parametrize("key_set", ["federation", "protocol"])
def test_a_rotation_walks_every_stage_by_the_database_clock(database_url, db_clock, web, key_set):
    settings = federation_database(database_url)
    generate_files()
    old = signing(documents(web, db_clock), key_set)

    rotation = start(key_set, settings)
    new = rotation.new_kid
    after_start = documents(web, db_clock)
    assert published(after_start, key_set) == {old, new} and signing(after_start, key_set) == old
    [shown] = federation_verbs.overview()["rotations"]
    assert (shown.next_step, shown.new_kid) == ("promote", new)
    assert abs((shown.next_step_at - db_clock.now()).total_seconds() - OVERLAP) < 60

    db_clock.advance(OVERLAP - 120)
    assert advance() == {"promoted": 0, "removed": 0, "waiting": 0}
    db_clock.advance(180)
    assert advance() == {"promoted": 1, "removed": 0, "waiting": 0}
    promoted = documents(web, db_clock)
    assert signing(promoted, key_set) == new
    assert published(promoted, key_set) == {old, new}  # retired: still published, unused
    states = {k.kid: k.state for k in federation_rows.keys()}
    assert states[old] == "retired" and states[new] == "active"
    if key_set == "federation":
        assert promoted["signed_header"]["kid"] == new

    db_clock.advance(OVERLAP - 120)
    assert advance()["removed"] == 0 and old in published(documents(web, db_clock), key_set)
    db_clock.advance(180)
    assert advance() == {"promoted": 0, "removed": 1, "waiting": 0}
    removed = documents(web, db_clock)
    assert published(removed, key_set) == {new} and signing(removed, key_set) == new
    assert federation_verbs.overview()["rotations"] == []
    [gone] = [k for k in federation_rows.keys(with_removed=True) if k.kid == old]
    assert gone.state == "removed" and federation_rows.private_key(key_set, "removed").private_jwk is None  # erased


class FakeSuperior:
    """A trust anchor on 127.0.0.1: its entity configuration names its fetch endpoint, whose
    Subordinate Statement about our entity lists the keys in ``listed`` (signed with PyJWT)."""

    def __init__(self, httpserver):
        self.server = httpserver
        self.entity_id = httpserver.url_for("/").rstrip("/")
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = pyjwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwk["kid"] = thumbprint(self.jwk)
        self.listed: list[dict] = []
        httpserver.expect_request("/.well-known/openid-federation").respond_with_handler(self.configuration)
        httpserver.expect_request("/fetch").respond_with_handler(self.statement)

    def sign(self, claims: dict) -> str:
        now = int(time.time())  # valid for longer than the tests move the database's clock
        return pyjwt.encode({"iat": now, "exp": now + 10 * 86400, **claims}, self.key, algorithm="ES256",
                            headers={"typ": "entity-statement+jwt", "kid": self.jwk["kid"]})

    def configuration(self, request):
        from werkzeug import Response

        return Response(self.sign({"iss": self.entity_id, "sub": self.entity_id, "jwks": {"keys": [self.jwk]},
                                   "metadata": {"federation_entity": {
                                       "federation_fetch_endpoint": self.entity_id + "/fetch"}}}),
                        content_type="application/entity-statement+jwt")

    def statement(self, request):
        from werkzeug import Response

        assert request.args["sub"] == ENTITY_ID
        return Response(self.sign({"iss": self.entity_id, "sub": ENTITY_ID, "jwks": {"keys": self.listed}}),
                        content_type="application/entity-statement+jwt")


def test_a_federation_key_signs_only_once_the_superior_lists_it(database_url, db_clock, web, httpserver,
                                                                monkeypatch, capsys):
    superior = FakeSuperior(httpserver)
    settings = federation_database(database_url, LAMPLIGHTER_FEDERATION_TRUST_ANCHOR_URL=superior.entity_id,
                            LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    generate_files()
    old = documents(web, db_clock)["header"]["kid"]
    superior.listed = [k.public_jwk for k in federation_rows.keys() if k.kid == old]
    new = start("federation", settings).new_kid
    db_clock.advance(OVERLAP + 60)

    assert advance() == {"promoted": 0, "removed": 0, "waiting": 1}
    [waiting] = federation_verbs.overview()["rotations"]
    assert waiting.next_step == "promote" and f"to list {new}" in waiting.waiting_for
    assert "regenerated" in actors.federation.refresh_cache.fn()  # the hourly job, 72 h on: a fresh statement
    assert documents(web, db_clock)["header"]["kid"] == old  # still the old key signs
    cli_environment(monkeypatch, database_url, LAMPLIGHTER_FEDERATION_TRUST_ANCHOR_URL=superior.entity_id,
                    LAMPLIGHTER_OUTBOUND_ALLOW=LOOPBACK)
    code, out, _ = run_cli(monkeypatch, capsys, "federation", "keys")
    assert code == 0 and f"waiting for the superior {superior.entity_id} to list {new}" in out

    superior.listed.append(next(k.public_jwk for k in federation_rows.keys() if k.kid == new))
    assert advance() == {"promoted": 1, "removed": 0, "waiting": 0}
    assert documents(web, db_clock)["header"]["kid"] == new
    code, out, err = run_cli(monkeypatch, capsys, "federation", "verify", "--url", web)
    assert code == 0 and f"ok  superior {superior.entity_id} lists {new}" in out, err
    superior.listed = superior.listed[:1]  # the superior drops the key that now signs
    code, out, err = run_cli(monkeypatch, capsys, "federation", "verify", "--url", web)
    assert code == 1 and f"does not list the active Federation Entity Key {new}" in err


def test_abort_before_promotion_removes_the_next_key_and_after_it_is_refused(database_url, db_clock, web, sql,
                                                                            monkeypatch, capsys):
    federation_database(database_url)
    cli_environment(monkeypatch, database_url)
    generate_files()
    [old] = documents(web, db_clock)["jwks"]["keys"]

    code, out, _ = run_cli(monkeypatch, capsys, "federation", "rotate", "--protocol")
    assert code == 0 and "published as next" in out
    assert len(documents(web, db_clock)["jwks"]["keys"]) == 2
    code, out, err = run_cli(monkeypatch, capsys, "federation", "rotate", "--protocol")
    assert code == 1 and "already running" in err
    code, out, _ = run_cli(monkeypatch, capsys, "federation", "rotate", "--protocol", "--abort")
    assert code == 0 and "aborted" in out
    assert documents(web, db_clock)["jwks"]["keys"] == [old] and federation_verbs.overview()["rotations"] == []
    code, _, err = run_cli(monkeypatch, capsys, "federation", "rotate", "--protocol", "--abort")
    assert code == 1 and "no protocol key rotation is running" in err
    audited = sql("SELECT action, actor FROM lamplighter.audit_log WHERE action LIKE 'federation_rotation.%%' "
                  "ORDER BY id")
    assert [action for action, _ in audited] == ["federation_rotation.started", "federation_rotation.aborted"]
    assert all(actor.startswith("cli:") for _, actor in audited)

    assert run_cli(monkeypatch, capsys, "federation", "rotate", "--protocol")[0] == 0
    db_clock.advance(OVERLAP + 60)
    assert advance()["promoted"] == 1
    with pytest.raises(errors.Conflict, match="past its promotion"):
        federation_rotation.abort("protocol", by="tests", publish=lambda: None)
    with pytest.raises(SystemExit) as usage:
        run_cli(monkeypatch, capsys, "federation", "rotate")
    assert usage.value.code == 2
    assert "one of the arguments --protocol --federation is required" in capsys.readouterr().err


def test_rotation_is_refused_before_the_first_key_and_keys_lists_states(database_url, monkeypatch, capsys):
    settings = federation_database(database_url)
    with pytest.raises(errors.Conflict, match="no active federation key"):
        start("federation", settings)
    generate_files()
    cli_environment(monkeypatch, database_url)
    code, out, _ = run_cli(monkeypatch, capsys, "federation", "keys", "--json")
    assert code == 0
    import json

    shown = json.loads(out)
    assert sorted((k["key_set"], k["state"]) for k in shown["keys"]) == [("federation", "active"),
                                                                         ("protocol", "active")]
    assert shown["rotations"] == [] and "private_jwk" not in out


def test_a_regeneration_that_read_the_keys_before_a_step_cannot_publish_after_it(database_url, db_clock, sql,
                                                                               monkeypatch):
    """A daily regeneration reads the keys, then a removal step commits and publishes: the
    step's version must come last, or the removed key would be served again until the next day."""
    import threading

    from domain import federation
    from tests.conftest import DatabaseClock

    settings = federation_database(database_url)
    generate_files()
    start("protocol", settings)
    db_clock.advance(OVERLAP + 60)
    assert advance()["promoted"] == 1
    [old] = [k.kid for k in federation_rows.keys() if k.state == "retired"]

    read_keys, go_on = threading.Event(), threading.Event()
    real_published_keys = federation_keys.published_keys

    def slow_published_keys():
        found = real_published_keys()
        if threading.current_thread().name == "daily":
            read_keys.set()
            go_on.wait(10)
        return found

    def remove_step():
        DatabaseClock().advance(2 * OVERLAP + 120)  # this thread's connection: the removal is due
        federation_rotation.advance(settings.federation, publish=lambda: federation.publish(settings.federation))

    monkeypatch.setattr(federation_keys, "published_keys", slow_published_keys)
    daily = threading.Thread(target=lambda: federation.regenerate(settings.federation), name="daily")
    step = threading.Thread(target=remove_step, name="step")
    daily.start()
    assert read_keys.wait(10)  # the daily run holds the old key set
    step.start()
    try:
        wait_for(lambda: sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == [(1,)],
                 message="the step's regeneration waiting for the daily one")
    finally:
        go_on.set()
        daily.join(10)
        step.join(10)
    assert [k.state for k in federation_rows.keys(with_removed=True) if k.kid == old] == ["removed"]
    latest = federation_rows.published()
    assert old not in kids(latest["jwks"]["keys"]) and latest["version"] == 5  # the step's, after the daily one
