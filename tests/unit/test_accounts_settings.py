"""The accounts' settings: defaults that work, one-line errors that name the variable."""
import pytest

from storage import settings


def test_defaults_and_parsing():
    default = settings.load({})
    assert (default.zitadel_org_id, default.zitadel_project_id, default.zitadel_role_keys) == ("", "", ())
    assert default.zitadel_password_change_required is True
    assert (default.zitadel_timeout, default.account_processing_timeout) == (10.0, 300.0)
    assert default.zitadel_user_id_prefix == "lamplighter-"
    custom = settings.load({"ZITADEL_ORG_ID": " org-1 ", "ZITADEL_PROJECT_ID": "p", "ZITADEL_ROLE_KEYS": "a, b,,c",
                            "ZITADEL_PASSWORD_CHANGE_REQUIRED": "false", "ZITADEL_TIMEOUT": "2",
                            "ZITADEL_USER_ID_PREFIX": "prod-", "LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT": "60"})
    assert (custom.zitadel_org_id, custom.zitadel_role_keys) == ("org-1", ("a", "b", "c"))
    assert (custom.zitadel_password_change_required, custom.zitadel_timeout) == (False, 2.0)
    assert (custom.zitadel_user_id_prefix, custom.account_processing_timeout) == ("prod-", 60.0)
    assert "pat-secret" not in repr(settings.load({"ZITADEL_PAT": "pat-secret"}))


@pytest.mark.parametrize("env,variable", [
    ({"ZITADEL_USER_ID_PREFIX": "no spaces"}, "ZITADEL_USER_ID_PREFIX"),
    ({"ZITADEL_TIMEOUT": "soon"}, "ZITADEL_TIMEOUT"),
    ({"ZITADEL_PASSWORD_CHANGE_REQUIRED": "maybe"}, "ZITADEL_PASSWORD_CHANGE_REQUIRED"),
    ({"ZITADEL_TIMEOUT": "30", "LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT": "60"},
     "LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT"),
])
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(settings.SettingsError, match=f"^{variable}"):
        settings.load(env)
