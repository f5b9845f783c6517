"""Cloud integrations' rules on plain data: client_secret_basic's encoding (RFC 6749 §2.3.1),
token responses (§5.1: expires_in only recommended), when the next refresh runs."""
import base64
from datetime import datetime, timedelta, timezone

import pytest

from actors.cloud_providers import basic_credentials, scrub
from domain import integrations
from domain.errors import InvalidInput
from storage.settings import IntegrationSettings


def test_client_secret_basic_form_encodes_id_and_secret_before_base64():
    header = basic_credentials("my client", "s3cr:t+/é")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]).decode() == "my+client:s3cr%3At%2B%2F%C3%A9"


def test_token_responses_are_checked_and_expires_in_is_optional():
    tokens = integrations.token_response({"access_token": "a", "refresh_token": "r", "expires_in": "3600"})
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_in) == ("a", "r", 3600.0)
    assert integrations.token_response({"access_token": "a"}).expires_in is None
    for unusable in (0, -5, "soon", True, None, [1]):
        assert integrations.expires_in(unusable) is None
    for bad in ({"refresh_token": "r"}, {"access_token": ""}, {"access_token": "a", "refresh_token": 5}, ["a"]):
        with pytest.raises(InvalidInput):
            integrations.token_response(bad)
    assert "a-secret-token" not in repr(integrations.token_response({"access_token": "a-secret-token"}))


@pytest.mark.parametrize("left, due_in", [(3600, 3300), (601, 301), (600, 300), (240, 120), (0, 0), (-10, 0)])
def test_the_next_refresh_is_five_minutes_before_expiry_or_halfway_for_short_tokens(left, due_in):
    now = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)

    class Row:
        pass

    row = Row()
    row.now, row.expires_at = now, now + timedelta(seconds=left)
    assert integrations.refresh_delay(row, IntegrationSettings()) == due_in


def test_what_a_provider_sends_back_is_scrubbed_of_the_secrets_sent():
    assert scrub("bad refresh token rt-123 for client s3cret", ("rt-123", "s3cret", "")) == \
        "bad refresh token [REDACTED] for client [REDACTED]"
