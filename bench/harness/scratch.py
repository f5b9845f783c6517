"""A throwaway, migrated database on the server DATABASE_URL names, for the benches that drive
Lamplighter's own code (bench/health_sweep.py, bench/webhooks.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2


@contextmanager
def scratch_database(server_url: str, prefix: str, **settings: str):
    """Create ``<prefix>_<random>``, migrate it with this venv's `lamplighter migrate`, and point
    this process's environment at it with a fresh encryption key and ``settings``
    (LAMPLIGHTER_* variables of the caller's environment left out). Yields (url, env); drops the
    database afterwards, whatever happened."""
    from cryptography.fernet import Fernet

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = urlunparse(urlparse(server_url)._replace(path="/" + name))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LAMPLIGHTER_")}, "DATABASE_URL": url,
           "LAMPLIGHTER_ENCRYPTION_KEYS": f"b1:{Fernet.generate_key().decode()}", **settings}
    try:
        subprocess.run([str(Path(sys.executable).with_name("lamplighter")), "migrate"], env=env, check=True,
                       capture_output=True)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("LAMPLIGHTER_", "DATABASE_URL"))})
        yield url, env
    finally:
        if "storage.connection" in sys.modules:
            sys.modules["storage.connection"].reset()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
