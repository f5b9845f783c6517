"""Shared set-up for the documents, quotas, billing and webhooks tests: two tenants, a file store
in the test's directory, an encryption key, the SSRF guard open to 127.0.0.1."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from storage import encryption, files
from storage import settings as settings_module
from tests.conftest import LOOPBACK, use_database

TENANTS = ("acme", "globex")


@dataclass
class DocumentsEnv:
    database_url: str
    files_dir: Path
    env: dict[str, str]

    @property
    def store(self) -> files.FileStore:
        return files.open_store(settings_module.get())

    def configure(self, **extra: str) -> settings_module.Settings:
        self.env.update(extra)
        settings = use_database(self.database_url, **self.env)
        encryption.reset()
        return settings


@pytest.fixture
def documents_env(database_url, tmp_path, monkeypatch) -> DocumentsEnv:
    from domain import tenants

    files_dir = tmp_path / "files"
    files_dir.mkdir()
    env = {"LAMPLIGHTER_FILES_URL": f"file://{files_dir}", "LAMPLIGHTER_OUTBOUND_ALLOW": LOOPBACK,
           "LAMPLIGHTER_ENCRYPTION_KEYS": f"t1:{Fernet.generate_key().decode()}"}
    for name, value in env.items():  # the CLI reads its settings from the environment
        monkeypatch.setenv(name, value)
    setup = DocumentsEnv(database_url, files_dir, env)
    setup.configure()
    for tenant in TENANTS:
        tenants.create_tenant(tenant, tenant.title(), by="tests")
    yield setup
    encryption.reset()


def upload(tenant: str, name: str, content: bytes = b"hello", *, store=None):
    from domain import documents

    return documents.upload(tenant, name, content, files=store or files.open_store(settings_module.get()),
                            by="tests")
