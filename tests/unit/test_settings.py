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
    ({"LAMPLIGHTER_STATEMENT_TIMEOUT_WEB": "-1"}, "LAMPLIGHTER_STATEMENT_TIMEOUT_WEB"),
    ({"LAMPLIGHTER_STATEMENT_TIMEOUT_WORKER": "soon"}, "LAMPLIGHTER_STATEMENT_TIMEOUT_WORKER"),
    ({"LAMPLIGHTER_READ_DATABASE_URL": "mysql://replica"}, "LAMPLIGHTER_READ_DATABASE_URL"),
    ({"LAMPLIGHTER_DIRECT_DATABASE_URL": "mysql://server"}, "LAMPLIGHTER_DIRECT_DATABASE_URL"),
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


def test_smtp_url_by_scheme_and_parameter():
    plain = load({"LAMPLIGHTER_SMTP_URL": "smtp://u%40x:p%3Ass@mail.example?starttls=0",
                  "LAMPLIGHTER_SMTP_FROM": "Lamp <lamp@example.org>"}).smtp
    assert (plain.host, plain.port, plain.username, plain.password, plain.starttls, plain.implicit_tls) == \
        ("mail.example", 587, "u@x", "p:ss", False, False)
    assert plain.url == "smtp://u%40x:***@mail.example?starttls=0"  # the settings never hold the URL's password
    starttls = load({"LAMPLIGHTER_SMTP_URL": "smtp://mail.example:2525", "LAMPLIGHTER_SMTP_FROM": "a@b.c"}).smtp
    assert (starttls.port, starttls.starttls, starttls.implicit_tls) == (2525, True, False)
    tls = load({"LAMPLIGHTER_SMTP_URL": "smtps://u:p@mail.example", "LAMPLIGHTER_SMTP_FROM": "a@b.c"}).smtp
    assert (tls.port, tls.starttls, tls.implicit_tls) == (465, False, True)
    assert not load({}).smtp.configured


@pytest.mark.parametrize("env,message", [
    ({"LAMPLIGHTER_SMTP_URL": "http://mail.example"}, "LAMPLIGHTER_SMTP_URL='http://mail.example': expected smtp://"),
    ({"LAMPLIGHTER_SMTP_URL": "smtp://u:secret@mail.example"}, "LAMPLIGHTER_SMTP_FROM: required"),
    ({"LAMPLIGHTER_SMTP_URL": "smtp://u:secret@mail.example?tls=1", "LAMPLIGHTER_SMTP_FROM": "a@b.c"},
     r"unknown parameter\(s\) tls"),
    ({"LAMPLIGHTER_SMTP_URL": "smtps://mail.example?starttls=1", "LAMPLIGHTER_SMTP_FROM": "a@b.c"}, "TLS already"),
    ({"LAMPLIGHTER_SMTP_FROM": "not an address"}, "LAMPLIGHTER_SMTP_FROM='not an address'"),
    ({"LAMPLIGHTER_ALERT_RECIPIENTS": "superadmins"}, "LAMPLIGHTER_ALERT_RECIPIENTS: 'superadmins' is not a recipient"),
    ({"LAMPLIGHTER_ALERT_WEBHOOK_URL": "hooks.example"}, "LAMPLIGHTER_ALERT_WEBHOOK_URL: expected an http"),
    ({"LAMPLIGHTER_ALERT_WEBHOOK_FORMAT": "teams"}, "LAMPLIGHTER_ALERT_WEBHOOK_FORMAT='teams'"),
])
def test_bad_notification_settings_name_the_variable_and_hide_the_password(env, message):
    with pytest.raises(SettingsError, match=message) as refused:
        load(env)
    assert "secret" not in str(refused.value)


def test_alert_recipients():
    assert load({}).alerts.recipients == ("role:superadmin",)
    assert load({"LAMPLIGHTER_ALERT_RECIPIENTS": "none"}).alerts.recipients == ()
    assert load({"LAMPLIGHTER_ALERT_RECIPIENTS": " role:operator , address:ops@example.org"}).alerts.recipients == \
        ("role:operator", "address:ops@example.org")


@pytest.mark.parametrize("url, secret", [
    ("postgresql://app:s3cret-pw@db.internal:5432/app", "s3cret-pw"),
    ("postgresql://app@db.internal/app?password=s3cret-pw&sslmode=require", "s3cret-pw"),
    ("postgresql://app@db.internal/app?sslmode=require&sslpassword=s3cret-pw", "s3cret-pw"),
    ("https://hooks.example.org/in?token=s3cret-pw#x", "s3cret-pw"),
    ("https://api.example.org/v1?API_KEY=s3cret-pw", "s3cret-pw"),
])
def test_redact_url_hides_passwords_in_the_authority_and_in_the_query(url, secret):
    shown = redact_url(url)
    assert secret not in shown and "***" in shown
    assert shown.replace("***", secret) == url  # only the secret is hidden


def test_redact_url_leaves_other_parameters_alone():
    url = "postgresql://app@db.internal/app?sslmode=require&application_name=web"
    assert redact_url(url) == url


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", "CEST"])
def test_a_bad_reports_zone_names_the_variable(zone):
    with pytest.raises(SettingsError, match=r"LAMPLIGHTER_REPORTS_ZONE=.*not an IANA time zone"):
        load({"LAMPLIGHTER_REPORTS_ZONE": zone})


def test_the_reports_zone_defaults_to_utc():
    assert load({}).reports.zone == "UTC"
    assert load({"LAMPLIGHTER_REPORTS_ZONE": " Europe/Berlin "}).reports.zone == "Europe/Berlin"


def test_operations_settings_are_checked():
    from storage.settings import SettingsError, load

    ops = load({"LAMPLIGHTER_BACKUP_SCRATCH_URL": "postgres://u:pw@db/scratch", "LAMPLIGHTER_BACKUP_KEEP_DAILY": "3",
                "LAMPLIGHTER_OPTIMIZE_REINDEX_RATIO": "0"}).operations
    assert (ops.backup_scratch_url, ops.backup_keep_daily, ops.optimize_reindex_ratio) == (
        "postgresql://u:pw@db/scratch", 3, 0.0)
    for env, message in [({"LAMPLIGHTER_OPTIMIZE_LOCK_TIMEOUT": "2"}, "at most 1 second"),
                         ({"LAMPLIGHTER_BACKUP_SCRATCH_URL": "mysql://u:pw@db/x"}, "expected a postgresql:// URL"),
                         ({"LAMPLIGHTER_BACKUP_KEEP_DAILY": "0"}, "LAMPLIGHTER_BACKUP_KEEP_DAILY")]:
        with pytest.raises(SettingsError, match=message) as refused:
            load(env)
        assert "pw" not in str(refused.value)


def test_each_process_kind_has_its_statement_timeout():
    database = load({"LAMPLIGHTER_STATEMENT_TIMEOUT_SCHEDULER": "0", "LAMPLIGHTER_READ_DATABASE_URL":
                     "postgres://r@replica/app"}).database
    assert {kind: database.statement_timeout(kind) for kind in ("web", "scheduler", "worker", "release", "cli")} == \
        {"web": 30.0, "scheduler": 0.0, "worker": 0.0, "release": 0.0, "cli": 0.0}
    assert database.read_url == "postgresql://r@replica/app"
