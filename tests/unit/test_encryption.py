import pytest
from cryptography.fernet import Fernet

from storage.encryption import EncryptionError, Keyring, development_key, is_encrypted

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_round_trip_and_key_id_in_the_stored_value():
    ring = Keyring.parse(f"k2:{NEW},k1:{OLD}")
    stored = ring.encrypt("s3cret-password")
    assert stored.startswith("enc:v1:k2:") and "s3cret" not in stored
    assert ring.decrypt(stored) == "s3cret-password"


def test_rotation_moves_old_values_to_the_primary_key():
    old_ring, new_ring = Keyring.parse(f"k1:{OLD}"), Keyring.parse(f"k2:{NEW},k1:{OLD}")
    stored = old_ring.encrypt("pw")
    assert new_ring.needs_rotation(stored)
    rotated = new_ring.rotate(stored)
    assert not new_ring.needs_rotation(rotated) and new_ring.decrypt(rotated) == "pw"
    with pytest.raises(EncryptionError, match="wrong or missing key"):
        old_ring.decrypt(rotated)


@pytest.mark.parametrize("spec", ["", "nokey", f"bad id:{NEW}", "k1:not-a-fernet-key", f"k1:{NEW},k1:{OLD}"],
                         ids=["empty", "no key", "bad id", "not a key", "id twice"])  # keys are random
def test_bad_key_specs_are_refused_without_echoing_keys(spec):
    with pytest.raises(EncryptionError) as info:
        Keyring.parse(spec)
    assert NEW not in str(info.value) and OLD not in str(info.value)


def test_plaintext_is_refused_by_decrypt():
    assert not is_encrypted("hunter2")
    with pytest.raises(EncryptionError, match="not encrypted"):
        Keyring.parse(f"k1:{NEW}").decrypt("hunter2")


def test_development_key_is_created_once_and_private(tmp_path):
    first = development_key(tmp_path)
    assert development_key(tmp_path) == first
    assert (tmp_path / "encryption.key").stat().st_mode & 0o077 == 0
    assert Keyring.parse(first).decrypt(Keyring.parse(first).encrypt("x")) == "x"
