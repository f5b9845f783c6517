"""The managed-account rules without a database: the retry schedule, Retry-After, permanent
errors, the 409 reconcile, refusing a non-encrypted password, and scrubbing echoed passwords.
The identity provider is an in-memory implementation of the domain's port."""
from datetime import datetime, timedelta, timezone

import pytest

from domain import accounts
from domain.accounts import (AlreadyExists, PermanentProviderError, ProviderSettings, ProviderUser,
                             RetryableProviderError)
from storage.accounts import AccountRequest
from storage.clock import FrozenClock
from storage.encryption import EncryptionError

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
CONFIG = ProviderSettings(organization_id="org-1", project_id="proj-1", user_id_prefix="ll-")
SECRET = "correct horse battery staple"


def request(**changes) -> AccountRequest:
    values = dict(id=42, organization_id="family-7", username="anna.berg", given_name="Anna", family_name="Berg",
                  email="anna@example.org", role="member", encrypted_password="enc:v1:k1:token", created_by="admin-3",
                  retry_count=0, status="processing", next_retry_at=NOW, claimed_at=NOW, last_error_message=None,
                  idp_user_id=None, created_at=NOW, updated_at=NOW)
    values.update(changes)
    return AccountRequest(**values)


class MemoryProvider:
    def __init__(self, *, create_error=None, grant_error=None, existing=None):
        self.create_error, self.grant_error, self.existing = create_error, grant_error, existing
        self.created, self.granted = [], []

    def create_human_user(self, user):
        self.created.append(user)
        if self.create_error:
            raise self.create_error
        return user.user_id

    def get_user(self, user_id):
        return self.existing

    def grant_roles(self, user_id, organization_id, project_id, role_keys):
        self.granted.append((user_id, organization_id, project_id, role_keys))
        if self.grant_error:
            raise self.grant_error


def decrypt(value):
    assert value == "enc:v1:k1:token"
    return SECRET


def test_schedule_is_1_5_15_60_240_minutes_then_failed():
    delays = []
    for retry_count in range(5):
        outcome = accounts.after_transient_failure(request(retry_count=retry_count), "503")
        assert (outcome.status, outcome.retry_count, outcome.erase_password) == ("pending", retry_count + 1, False)
        delays.append(timedelta(seconds=outcome.retry_delay))
    assert delays == [timedelta(minutes=m) for m in (1, 5, 15, 60, 240)]
    last = accounts.after_transient_failure(request(retry_count=5), "503")
    assert (last.status, last.retry_count, last.erase_password) == ("failed", 5, True)
    assert last.last_error_message == "gave up after 5 retries; last error: 503"
    assert last.notify[0] == "admin-3"


@pytest.mark.parametrize("retry_count,retry_after,expected", [
    (0, 600, 600), (0, 5, 60), (2, 120, 900), (0, 10 ** 9, 86400), (0, None, 60)])
def test_retry_after_pushes_the_next_try_later_never_earlier(retry_count, retry_after, expected):
    outcome = accounts.after_transient_failure(request(retry_count=retry_count), "429", retry_after)
    assert outcome.retry_delay == expected


def test_success_sends_the_decrypted_password_and_grants_the_requests_role():
    provider = MemoryProvider()
    outcome = accounts.attempt(request(), provider, CONFIG, decrypt=decrypt)
    assert (outcome.status, outcome.idp_user_id, outcome.erase_password, outcome.notify) == \
        ("completed", "ll-42", True, None)
    [user] = provider.created
    assert (user.user_id, user.organization_id, user.password, user.password_change_required) == \
        ("ll-42", "org-1", SECRET, True)
    assert SECRET not in repr(user)
    assert provider.granted == [("ll-42", "org-1", "proj-1", ("member",))]


def test_configured_role_keys_replace_the_requests_role_and_no_project_means_no_grant():
    provider = MemoryProvider()
    accounts.attempt(request(), provider, ProviderSettings("org-1", "proj-1", ("a", "b")), decrypt=decrypt)
    assert provider.granted[0][3] == ("a", "b")
    provider = MemoryProvider()
    assert accounts.attempt(request(), provider, ProviderSettings("org-1"), decrypt=decrypt).status == "completed"
    assert provider.granted == []


def test_a_grant_that_already_exists_is_success():
    provider = MemoryProvider(grant_error=AlreadyExists("Zitadel 409: grant exists", status=409))
    assert accounts.attempt(request(), provider, CONFIG, decrypt=decrypt).status == "completed"


def test_409_links_our_own_user_only():
    ours = ProviderUser(user_id="ll-42", organization_id="org-1", username="Anna.Berg")
    conflict = AlreadyExists("Zitadel 409 already_exists: User already exists", status=409)
    outcome = accounts.attempt(request(), MemoryProvider(create_error=conflict, existing=ours), CONFIG,
                               decrypt=decrypt)
    assert (outcome.status, outcome.idp_user_id) == ("completed", "ll-42")
    other_org = ProviderUser(user_id="ll-42", organization_id="org-2", username="anna.berg")
    outcome = accounts.attempt(request(), MemoryProvider(create_error=conflict, existing=other_org), CONFIG,
                               decrypt=decrypt)
    assert outcome.status == "failed" and "organization org-2" in outcome.last_error_message
    outcome = accounts.attempt(request(), MemoryProvider(create_error=conflict, existing=None), CONFIG,
                               decrypt=decrypt)
    assert outcome.status == "failed" and "taken by another account" in outcome.last_error_message


def test_permanent_error_fails_at_once_and_erases_the_password():
    error = PermanentProviderError("Zitadel 400 invalid_argument: Username is invalid", status=400)
    outcome = accounts.attempt(request(retry_count=2), MemoryProvider(create_error=error), CONFIG,
                               decrypt=decrypt)
    assert (outcome.status, outcome.retry_count, outcome.erase_password) == ("failed", 2, True)
    assert outcome.notify == ("admin-3", "creation_failed",
                              "The managed account 'anna.berg' (anna@example.org) for organization family-7 could "
                              "not be created at the identity provider: Zitadel 400 invalid_argument: Username is "
                              "invalid")


def test_a_password_echoed_in_an_error_is_scrubbed():
    error = RetryableProviderError(f"Zitadel 503: proxy could not forward {{\"password\": \"{SECRET}\"}}",
                                   status=503)
    outcome = accounts.attempt(request(), MemoryProvider(create_error=error), CONFIG, decrypt=decrypt)
    assert SECRET not in outcome.last_error_message and "[REDACTED]" in outcome.last_error_message
    outcome = accounts.attempt(request(), MemoryProvider(create_error=ValueError(f"bad {SECRET}")), CONFIG,
                               decrypt=decrypt)
    assert outcome.status == "pending" and outcome.last_error_message == "unexpected ValueError: bad [REDACTED]"


def test_non_encrypted_password_is_refused_and_never_sent():
    provider = MemoryProvider()
    outcome = accounts.attempt(request(encrypted_password="hunter2"), provider, CONFIG, decrypt=decrypt)
    assert (outcome.status, outcome.erase_password) == ("failed", True)
    assert outcome.last_error_message == accounts.NOT_ENCRYPTED
    assert "hunter2" not in outcome.last_error_message and "hunter2" not in outcome.notify[2]
    assert provider.created == []


def test_no_password_creates_without_one_and_undecryptable_is_retried():
    provider = MemoryProvider()
    assert accounts.attempt(request(encrypted_password=None), provider, CONFIG, decrypt=decrypt).status == \
        "completed"
    assert provider.created[0].password is None

    def broken(value):
        raise EncryptionError("cannot decrypt a value under key id 'k1': wrong or missing key")

    provider = MemoryProvider()
    outcome = accounts.attempt(request(), provider, CONFIG, decrypt=broken)
    assert outcome.status == "pending" and outcome.last_error_message.startswith("cannot decrypt the stored password")
    assert provider.created == []


@pytest.mark.parametrize("field,value,message", [
    ("username", " ", "username is required"), ("email", "not-an-address", "is not an e-mail address"),
    ("given_name", "x" * 201, "given_name is longer than 200 characters"), ("password", "", "password must be")])
def test_invalid_requests_are_refused_before_anything_is_stored(field, value, message):
    values = dict(organization_id="family-7", username="anna", given_name="Anna", family_name="Berg",
                  email="anna@example.org", role="member", created_by="admin-3", password="pw")
    values[field] = value
    with pytest.raises(accounts.InvalidAccountRequest, match=message):
        accounts.request_account(FrozenClock(NOW), **values, encrypt=lambda v: pytest.fail("must not encrypt"))


def test_derived_user_id_is_the_prefix_and_the_row_id():
    assert accounts.derived_user_id("lamplighter-", 42) == "lamplighter-42"
    assert accounts.derived_user_id("", 7) == "7"
