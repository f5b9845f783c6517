"""The Zitadel adapter against a local HTTP server (no database): request shapes, the bearer
token, timeouts, and how Zitadel's answers map onto the domain's errors."""
import json
import socket
from datetime import datetime, timezone

import pytest
from werkzeug import Response

from actors.zitadel import ZitadelClient, parse_retry_after
from domain.accounts import AlreadyExists, HumanUser, PermanentProviderError, RetryableProviderError

USER = HumanUser(user_id="ll-1", organization_id="org-1", username="anna", given_name="Anna", family_name="Berg",
                 email="anna@example.org", password="pw-1", password_change_required=False)


def zitadel_error(status, code, message, headers=None):
    return Response(json.dumps({"code": code, "message": message, "details": []}), status=status,
                    headers=headers or {}, content_type="application/json")


@pytest.fixture
def client(httpserver):
    with ZitadelClient(httpserver.url_for("/"), "pat-1", timeout=2) as c:
        yield c


def test_create_posts_the_v2_body_with_the_bearer_token(httpserver, client):
    httpserver.expect_request(
        "/v2/users/human", method="POST", headers={"Authorization": "Bearer pat-1"},
        json={"userId": "ll-1", "organization": {"orgId": "org-1"}, "username": "anna",
              "profile": {"givenName": "Anna", "familyName": "Berg"}, "email": {"email": "anna@example.org"},
              "password": {"password": "pw-1", "changeRequired": False}},
    ).respond_with_json({"userId": "ll-1", "details": {"resourceOwner": "org-1"}}, status=201)
    assert client.create_human_user(USER) == "ll-1"


def test_get_user_reads_org_and_username_and_404_is_none(httpserver, client):
    httpserver.expect_request("/v2/users/ll-1", method="GET").respond_with_json(
        {"details": {}, "user": {"userId": "ll-1", "username": "anna", "details": {"resourceOwner": "org-1"},
                                 "human": {}}})
    httpserver.expect_request("/v2/users/ll-2", method="GET").respond_with_response(
        zitadel_error(404, 5, "User could not be found"))
    user = client.get_user("ll-1")
    assert (user.user_id, user.organization_id, user.username) == ("ll-1", "org-1", "anna")
    assert client.get_user("ll-2") is None


def test_grant_uses_the_org_header_and_409_is_already_exists(httpserver, client):
    httpserver.expect_ordered_request(
        "/management/v1/users/ll-1/grants", method="POST", headers={"x-zitadel-orgid": "org-1"},
        json={"projectId": "p", "roleKeys": ["member"]}).respond_with_json({"userGrantId": "g"})
    httpserver.expect_ordered_request("/management/v1/users/ll-1/grants", method="POST").respond_with_response(
        zitadel_error(409, 6, "User grant already exists"))
    client.grant_roles("ll-1", "org-1", "p", ("member",))
    with pytest.raises(AlreadyExists, match="^Zitadel 409 already_exists: User grant already exists$"):
        client.grant_roles("ll-1", "org-1", "p", ("member",))


@pytest.mark.parametrize("status,code,name", [(400, 3, "invalid_argument"), (401, 16, "unauthenticated"),
                                              (403, 7, "permission_denied"), (404, 5, "not_found")])
def test_permanent_statuses(httpserver, client, status, code, name):
    httpserver.expect_request("/v2/users/human").respond_with_response(zitadel_error(status, code, "nope"))
    with pytest.raises(PermanentProviderError, match=f"^Zitadel {status} {name}: nope$") as caught:
        client.create_human_user(USER)
    assert caught.value.status == status
    assert "pw-1" not in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_keep_retry_after(httpserver, client, status):
    httpserver.expect_request("/v2/users/human").respond_with_response(
        zitadel_error(status, 14, "busy", headers={"Retry-After": "120"}))
    with pytest.raises(RetryableProviderError) as caught:
        client.create_human_user(USER)
    assert caught.value.retry_after == 120.0 and caught.value.status == status


def test_connect_style_string_codes_and_non_json_bodies(httpserver, client):
    httpserver.expect_ordered_request("/v2/users/human").respond_with_json(
        {"code": "invalid_argument", "message": "Username is invalid"}, status=400)
    httpserver.expect_ordered_request("/v2/users/human").respond_with_data(
        "<html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html")
    with pytest.raises(PermanentProviderError, match="^Zitadel 400 invalid_argument: Username is invalid$"):
        client.create_human_user(USER)
    with pytest.raises(RetryableProviderError, match="^Zitadel 502: <html><body>502 Bad Gateway</body></html>$"):
        client.create_human_user(USER)


def test_network_errors_are_retryable():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with ZitadelClient(f"http://127.0.0.1:{port}", "pat-1", timeout=1) as client:
        with pytest.raises(RetryableProviderError, match="^cannot reach Zitadel for POST /v2/users/human: "
                                                         "ConnectionError$"):
            client.create_human_user(USER)


def test_retry_after_seconds_or_http_date():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:02:00 GMT", now=now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
