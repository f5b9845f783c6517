"""Federation settings: what is missing is named, and a value that would serve an expired
statement, cache past a key's life or mix a trust anchor with superiors stops start-up."""
import pytest

from storage.settings import SettingsError, load

BASE = {"LAMPLIGHTER_FEDERATION_ENTITY_ID": "https://op.example.org/",
        "LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS": "https://ta.example.org"}


def test_defaults_and_what_is_missing():
    unset = load({}).federation
    assert unset.missing() == ["LAMPLIGHTER_FEDERATION_ENTITY_ID",
                               "LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS (or LAMPLIGHTER_FEDERATION_TRUST_ANCHOR=true)"]
    configured = load(BASE).federation
    assert configured.missing() == [] and configured.entity_id == "https://op.example.org"
    assert (configured.key_alg, configured.lifetime, configured.max_age, configured.rotation_overlap) == \
        ("ES256", 72 * 3600, 3600, 72 * 3600)
    anchor = load({"LAMPLIGHTER_FEDERATION_ENTITY_ID": "https://ta.example.org",
                   "LAMPLIGHTER_FEDERATION_TRUST_ANCHOR": "true"}).federation
    assert anchor.missing() == [] and anchor.authority_hints == ()
    # The trust anchor URL is the superior to check, and the authority hint unless others are given.
    hinted = load({"LAMPLIGHTER_FEDERATION_ENTITY_ID": "https://op.example.org",
                   "LAMPLIGHTER_FEDERATION_TRUST_ANCHOR_URL": "https://ta.example.org"}).federation
    assert hinted.authority_hints == ("https://ta.example.org",)


@pytest.mark.parametrize("env, named", [
    ({"LAMPLIGHTER_FEDERATION_LIFETIME": "172800"}, "at least three regeneration intervals"),
    ({"LAMPLIGHTER_FEDERATION_MAX_AGE": "300000"}, "LAMPLIGHTER_FEDERATION_MAX_AGE: must be below"),
    ({"LAMPLIGHTER_FEDERATION_ROTATION_OVERLAP": "60"}, "LAMPLIGHTER_FEDERATION_ROTATION_OVERLAP"),
    ({"LAMPLIGHTER_FEDERATION_TRUST_ANCHOR": "true"}, "a trust anchor has no superior"),
    ({"LAMPLIGHTER_FEDERATION_METADATA": "[1]"}, "expected a JSON object of entity types"),
    ({"LAMPLIGHTER_FEDERATION_METADATA": "{"}, "LAMPLIGHTER_FEDERATION_METADATA: not valid JSON"),
    ({"LAMPLIGHTER_FEDERATION_KEY_ALG": "HS256"}, "LAMPLIGHTER_FEDERATION_KEY_ALG"),
    ({"LAMPLIGHTER_FEDERATION_RSA_BITS": "1024"}, "LAMPLIGHTER_FEDERATION_RSA_BITS"),
    ({"LAMPLIGHTER_FEDERATION_ENTITY_ID": "op.example.org"}, "LAMPLIGHTER_FEDERATION_ENTITY_ID"),
    ({"LAMPLIGHTER_FEDERATION_ENTITY_TYPE": "federation_entity"}, "LAMPLIGHTER_FEDERATION_ENTITY_TYPE"),
])
def test_a_bad_value_names_its_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        load({**BASE, **env})


def test_the_metadata_keeps_the_configured_entries_and_points_at_the_key_documents():
    from domain.federation import entity_metadata

    settings = load({**BASE, "LAMPLIGHTER_FEDERATION_METADATA":
                     '{"openid_provider": {"issuer": "https://op.example.org", "jwks_uri": "https://elsewhere"}, '
                     '"federation_entity": {"organization_name": "Example"}}'}).federation
    assert entity_metadata(settings) == {
        "openid_provider": {"issuer": "https://op.example.org", "jwks_uri": "https://op.example.org/.well-known/jwks.json",
                            "signed_jwks_uri": "https://op.example.org/.well-known/signed-jwks.json"},
        "federation_entity": {"organization_name": "Example"}}
