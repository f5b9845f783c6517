"""Federation publishing: federation.generate_files builds, signs, stores and publishes the entity
configuration, the JWKS and the signed JWKS; the router serves them over real HTTP with their
content types and caching headers; PyJWT (not joserfc, which signed them) verifies them."""
from datetime import timedelta
from pathlib import Path

import pytest
import requests

import actors
from console import federation_web
from domain.outcomes import PermanentFailure
from storage import federation as federation_rows
from tests.conftest import use_database
from tests.federation_support import federation_database, ENTITY_ID, FEDERATION_ENV, SUPERIOR, kids, served, served_documents

generate_files = actors.federation.generate_files.fn
refresh_cache = actors.federation.refresh_cache.fn


@pytest.fixture
def federation(database_url):
    return federation_database(database_url)


@pytest.fixture
def web():
    with served() as base:
        yield base


def test_generated_documents_are_served_and_verify_with_another_jose_library(federation, web, db_clock):
    result = generate_files()
    assert result["generated"]["created_keys"] == ["federation", "protocol"] and result["files"] == "skipped"
    assert result["cache"]["version"] == result["generated"]["version"]
    now = int(db_clock.now().timestamp())

    served_now = served_documents(web)
    header, claims = served_now["header"], served_now["claims"]
    assert header["alg"] == "ES256" and header["kid"] == result["generated"]["signing_kid"]
    assert claims["iss"] == claims["sub"] == ENTITY_ID
    assert now - 5 <= claims["iat"] <= now + 5 and claims["exp"] - claims["iat"] == 72 * 3600
    assert claims["authority_hints"] == [SUPERIOR]
    assert claims["metadata"]["openid_provider"] == {
        "issuer": "https://op.example.org", "jwks_uri": ENTITY_ID + "/.well-known/jwks.json",
        "signed_jwks_uri": ENTITY_ID + "/.well-known/signed-jwks.json"}
    assert "federation_entity" in claims["metadata"]
    # Two key sets, kept apart: the entity configuration lists the Federation Entity Key only,
    # jwks.json the protocol key only; the signed JWKS is signed by the former and holds the latter.
    [federation_key] = claims["jwks"]["keys"]
    [protocol_key] = served_now["jwks"]["keys"]
    assert federation_key["kid"] == header["kid"] != protocol_key["kid"]
    assert federation_key["crv"] == protocol_key["crv"] == "P-256"
    assert served_now["signed_header"]["kid"] == header["kid"]
    assert served_now["signed"]["keys"] == served_now["jwks"]["keys"]
    assert served_now["signed"]["iat"] == claims["iat"]

    responses = served_now["responses"]
    assert responses["entity_configuration"].headers["Content-Type"] == "application/entity-statement+jwt"
    assert responses["jwks"].headers["Content-Type"] == "application/json"
    assert responses["signed_jwks"].headers["Content-Type"] == "application/jwk-set+jwt"
    for response in responses.values():
        assert response.headers["Cache-Control"] == "public, max-age=3600"
        etag = response.headers["ETag"]
        again = requests.get(response.url, headers={"If-None-Match": etag}, timeout=5)
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag


def test_web_processes_reload_when_the_generation_changes_and_never_build_per_request(federation, web):
    generate_files()
    first = requests.get(web + "/.well-known/jwks.json", timeout=5)
    reloads = federation_web.published.reloads
    for _ in range(3):
        assert requests.get(web + "/.well-known/jwks.json", timeout=5).headers["ETag"] == first.headers["ETag"]
    assert federation_web.published.reloads == reloads  # polled, not reloaded

    assert refresh_cache()["generation"] == 2
    requests.get(web + "/.well-known/jwks.json", timeout=5)
    assert federation_web.published.reloads == reloads + 1
    # A new protocol key published by a regeneration shows on the next request after the refresh.
    from domain import federation_keys

    new_kid = federation_keys.create_key("protocol", federation.federation, state="next")
    assert new_kid not in kids(requests.get(web + "/.well-known/jwks.json", timeout=5).json()["keys"])
    generate_files()
    assert new_kid in kids(requests.get(web + "/.well-known/jwks.json", timeout=5).json()["keys"])


def test_max_age_stays_below_the_remaining_lifetime(federation, web, db_clock):
    db_clock.advance(-(72 * 3600 - 1800))  # generated 71.5 h ago: 30 minutes left
    generate_files()
    response = requests.get(web + "/.well-known/openid-federation", timeout=5)
    max_age = int(response.headers["Cache-Control"].split("max-age=")[1])
    assert 1700 < max_age < 1800
    # The hourly refresh regenerates a statement that two failed nights left close to expiry.
    db_clock.advance(72 * 3600 - 1800)
    refreshed = refresh_cache()
    assert refreshed["regenerated"] == refreshed["version"]
    response = requests.get(web + "/.well-known/openid-federation", timeout=5)
    assert response.headers["Cache-Control"] == "public, max-age=3600"


def test_not_configured_is_a_503_with_the_reason_and_the_scheduled_jobs_skip_or_fail(database_url, web):
    use_database(database_url)
    response = requests.get(web + "/.well-known/openid-federation", timeout=5)
    assert response.status_code == 503 and response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "federation_not_configured"
    assert "LAMPLIGHTER_FEDERATION_ENTITY_ID" in response.json()["message"]
    # The rotation step job has nothing to advance: no failure every 5 minutes.
    assert actors.federation.advance_rotations.fn() == {"promoted": 0, "removed": 0, "waiting": 0}
    # Nor do the other scheduled jobs, on a deployment that does not publish: no dead job every hour.
    assert generate_files() == refresh_cache() == actors.federation.NOT_IN_USE
    # Half a configuration is a mistake: they fail, naming what is missing.
    use_database(database_url, LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS="https://anchor.example")
    for job in (generate_files, refresh_cache):
        with pytest.raises(PermanentFailure, match="federation endpoint not configured: set "
                                                   "LAMPLIGHTER_FEDERATION_ENTITY_ID$"):
            job()
    use_database(database_url)
    federation_database(database_url)
    assert requests.get(web + "/.well-known/jwks.json", timeout=5).json()["error"] == "federation_not_published"


def test_a_trust_anchor_has_no_authority_hints_and_rsa_keys_when_configured(database_url, web):
    federation_database(database_url, LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS="",
                        LAMPLIGHTER_FEDERATION_TRUST_ANCHOR="true", LAMPLIGHTER_FEDERATION_KEY_ALG="RS256")
    generate_files()
    documents = served_documents(web)
    assert "authority_hints" not in documents["claims"] and documents["header"]["alg"] == "RS256"
    [protocol_key] = documents["jwks"]["keys"]
    assert protocol_key["kty"] == "RSA" and len(protocol_key["n"]) >= 342  # 2048 bits, base64url


def test_files_are_written_through_the_file_store_with_public_material_only(database_url, web, tmp_path):
    federation_database(database_url, LAMPLIGHTER_FEDERATION_WRITE_FILES="true",
                 LAMPLIGHTER_FILES_URL=f"file://{tmp_path}")
    result = generate_files()
    assert result["files"] == ["federation/federation-entity-statement.jwt", "federation/federation-jwks.json"]
    statement = (tmp_path / "federation" / "federation-entity-statement.jwt").read_text()
    assert statement == requests.get(web + "/.well-known/openid-federation", timeout=5).text
    assert '"d"' not in (tmp_path / "federation" / "federation-jwks.json").read_text()


def test_a_failed_file_write_still_refreshes_the_cache_then_fails_the_job(database_url, web):
    # DATABASE_URL set and no LAMPLIGHTER_FILES_URL: no durable store.
    federation_database(database_url, LAMPLIGHTER_FEDERATION_WRITE_FILES="true")
    with pytest.raises(PermanentFailure) as failed:
        generate_files()
    assert "federation files not written (no durable file store" in str(failed.value)
    assert "documents version 1 stored and cache generation 1 published" in str(failed.value)
    assert requests.get(web + "/.well-known/openid-federation", timeout=5).status_code == 200
    assert federation_rows.published()["version"] == 1


def test_with_the_database_unreachable_a_web_process_serves_the_documents_it_holds(federation, web, monkeypatch):
    generate_files()
    held = requests.get(web + "/.well-known/signed-jwks.json", timeout=5)

    def unreachable():
        raise OSError("connection refused")

    monkeypatch.setattr(federation_rows, "publication", unreachable)
    again = requests.get(web + "/.well-known/signed-jwks.json", timeout=5)
    assert again.status_code == 200 and again.text == held.text
    monkeypatch.setattr(federation_web, "published", federation_web.PublishedDocuments())  # a process just started
    cold = requests.get(web + "/.well-known/signed-jwks.json", timeout=5)
    assert cold.status_code == 503 and cold.json()["error"] == "database_unreachable"
