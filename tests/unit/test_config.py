"""`lamplighter config`: every setting as resolved, no secret shown."""
import json
import re
import subprocess
import sys
from dataclasses import fields, is_dataclass

import pytest

from console.verbs import config
from storage.settings import Settings
from tests.conftest import lamplighter_env

URL = "postgresql://app:hunter2@db.example:5432/app?sslmode=require&password=qs-secret"


@pytest.mark.parametrize("url, shown", [
    ("postgresql://app:hunter2@db/x", "postgresql://app:***@db/x"),
    ("postgresql://app@db/x?password=hunter2", "postgresql://app@db/x?password=***"),
    ("postgresql://app@db/x?sslmode=require&PASSWORD=hunter2&application_name=a",
     "postgresql://app@db/x?sslmode=require&PASSWORD=***&application_name=a"),
    ("postgresql://app:p%40ss@db/x", "postgresql://app:***@db/x"),
    ("postgresql://db/x", "postgresql://db/x"),
])
def test_database_shown_carries_no_password(url, shown):
    assert config.database_shown(url) == shown


def _config(*args):
    env = lamplighter_env(DATABASE_URL=URL, ZITADEL_PAT="pat-secret", LAMPLIGHTER_ENCRYPTION_KEYS="k1:fernet-key",
                          LAMPLIGHTER_SMTP_URL="smtp://mailer:smtp-secret@mail.example:587",
                          LAMPLIGHTER_SMTP_FROM="lamplighter@example.org",
                          LAMPLIGHTER_ALERT_WEBHOOK_URL="https://hooks.example/services/hook-secret",
                          LAMPLIGHTER_READ_DATABASE_URL="postgres://app:replica-secret@replica.example/app",
                          LAMPLIGHTER_STATEMENT_TIMEOUT_WEB="12.5")
    return subprocess.run([sys.executable, "-m", "console", "config", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_config_lists_every_setting_with_secrets_redacted():
    shown = _config("--json")
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout)
    # Sections (settings by noun) show field by field: smtp.url, smtp.password, ...
    sections = {f.name for f in fields(Settings) if is_dataclass(getattr(Settings(), f.name))}
    assert {"smtp", "alerts", "documents", "billing", "webhooks"} <= sections
    assert list(values) == [f"{f.name}.{sf.name}" if f.name in sections else f.name for f in fields(Settings)
                            for sf in (fields(getattr(Settings(), f.name)) if f.name in sections else [f])]
    assert values["smtp.url"] == "smtp://mailer:***@mail.example:587"
    assert (values["smtp.password"], values["alerts.webhook_url"]) == ("(set)", "(set)")
    assert values["database_url"] == "postgresql://app:***@db.example:5432/app?sslmode=require&password=***"
    assert (values["zitadel_pat"], values["encryption_keys"]) == ("(set)", "(set)")
    assert values["finish_flush_interval"] == 0.005
    assert values["database.read_url"] == "postgresql://app:***@replica.example/app"
    assert [values[f"database.statement_timeout_{kind}"] for kind in ("web", "scheduler", "worker")] == [12.5, 60, 0]
    table = _config()
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("SETTING")
    assert re.search(r"^finish_flush_interval +0\.005$", table.stdout, re.MULTILINE)  # not 0.0
    for secret in ("hunter2", "qs-secret", "pat-secret", "fernet-key", "smtp-secret", "hook-secret", "replica-secret"):
        assert secret not in shown.stdout + shown.stderr + table.stdout + table.stderr


def test_tls_is_required_for_a_server_over_the_network_unless_the_url_says_otherwise():
    from storage.connection import split_url, tls_default

    def default(url):
        return tls_default(*split_url(url))

    assert default("postgres://u:p@db.example.com:5432/app") == {"sslmode": "require"}
    assert default("postgres://u:p@10.0.0.5/app") == {"sslmode": "require"}
    assert default("postgres://u:p@db.example.com/app?sslmode=verify-full") == {}
    assert default("postgres://u:p@db.internal/app?sslmode=disable") == {}
    assert default("postgresql://postgres@127.0.0.1:5432/postgres") == {}
    assert default("postgresql://postgres@localhost/postgres") == {}
    assert default("postgresql://postgres@[::1]/postgres") == {}
    assert default("postgresql:///app?host=/run/postgresql") == {}  # Unix socket
