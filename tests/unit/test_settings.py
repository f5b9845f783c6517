import pytest

from storage.settings import SettingsError, load, redact_url


def test_defaults_work_on_a_laptop():
    settings = load({})
    assert settings.embedded
    assert settings.shutdown_grace == 25.0
    assert settings.worker_threads == 8
    assert settings.prepared_statements and settings.listen
    assert not load({"LAMPLIGHTER_PREPARED_STATEMENTS": "false"}).prepared_statements


def test_heroku_postgres_scheme_is_accepted():
    assert load({"DATABASE_URL": "postgres://u:p@h:5432/d"}).database_url == "postgresql://u:p@h:5432/d"


@pytest.mark.parametrize("env, variable", [
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"LAMPLIGHTER_WORKER_THREADS": "many"}, "LAMPLIGHTER_WORKER_THREADS"),
    ({"LAMPLIGHTER_WORKER_THREADS": "0"}, "LAMPLIGHTER_WORKER_THREADS"),
    ({"LAMPLIGHTER_POLL_INTERVAL": "-1"}, "LAMPLIGHTER_POLL_INTERVAL"),
    ({"LAMPLIGHTER_LISTEN": "maybe"}, "LAMPLIGHTER_LISTEN"),
    ({"LAMPLIGHTER_PREPARED_STATEMENTS": "perhaps"}, "LAMPLIGHTER_PREPARED_STATEMENTS"),
    ({"LAMPLIGHTER_LOG_FORMAT": "xml"}, "LAMPLIGHTER_LOG_FORMAT"),
    ({"LAMPLIGHTER_QUEUES": "ok,bad queue"}, "LAMPLIGHTER_QUEUES"),
    ({"PORT": "http"}, "PORT"),
    ({"LAMPLIGHTER_LEASE_TIMEOUT": "1", "LAMPLIGHTER_HEARTBEAT_INTERVAL": "2"}, "LAMPLIGHTER_LEASE_TIMEOUT"),
])
def test_bad_value_names_the_variable(env, variable):
    with pytest.raises(SettingsError) as info:
        load(env)
    message = str(info.value)
    assert message.startswith(variable)
    assert "\n" not in message


def test_printed_settings_hide_secrets():
    shown = load({"DATABASE_URL": "postgres://app:hunter2@db/x", "LAMPLIGHTER_ENCRYPTION_KEYS": "k1:abc",
                  "ZITADEL_PAT": "pat-secret"}).public()
    text = repr(shown)
    assert "hunter2" not in text and "abc" not in text and "pat-secret" not in text
    assert shown["encryption_keys"] == "(set)"
    assert redact_url("postgresql://a:b@c/d") == "postgresql://a:***@c/d"
