"""Password hashing and verification (domain/passwords.py): argon2id, salted, checked in the
same time for an unknown user."""
import pytest

from domain import passwords
from domain.errors import InvalidInput

PASSWORD = "correct horse battery staple"


def test_a_hash_is_argon2id_salted_and_verifies_only_its_password():
    first, second = passwords.hash_password(PASSWORD), passwords.hash_password(PASSWORD)
    assert first.startswith("$argon2id$v=19$") and second.startswith("$argon2id$")
    assert first != second  # a fresh salt each time
    assert PASSWORD not in first
    assert passwords.verify(first, PASSWORD) and passwords.verify(second, PASSWORD)
    assert not passwords.verify(first, PASSWORD + "!")
    assert not passwords.verify(first, "")
    assert not passwords.needs_rehash(first)


def test_no_hash_or_a_foreign_one_never_verifies():
    assert not passwords.verify(None, PASSWORD)
    assert not passwords.verify("", PASSWORD)
    assert not passwords.verify("$2b$12$abcdefghijklmnopqrstuuYz3Jf5Vb4yQY0nFq2zv2OaYw1xGmA1u", PASSWORD)  # bcrypt
    assert not passwords.verify("$argon2id$garbage", PASSWORD)


def test_a_weaker_hash_asks_to_be_redone():
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    assert passwords.verify(weak, PASSWORD)
    assert passwords.needs_rehash(weak)


@pytest.mark.parametrize("bad", ["short", " " * 20, "x" * 1025])
def test_the_policy_refuses_without_repeating_the_password(bad):
    with pytest.raises(InvalidInput) as refused:
        passwords.hash_password(bad)
    assert bad.strip() == "" or bad not in str(refused.value)
