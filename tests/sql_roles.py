"""A login role holding only ``lamplighter_enqueue`` (the grant a service is told to use), with a
random name, created for one test on the test server and dropped afterwards. The test servers
trust connections from 127.0.0.1 and the embedded server's socket, so it needs no password."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest


@dataclass(frozen=True)
class Login:
    role: str
    url: str  # the test database, as this role

    def connect(self, *, autocommit: bool = True):
        conn = psycopg2.connect(self.url)
        conn.autocommit = autocommit
        return conn


def as_user(url: str, user: str) -> str:
    parts = urlparse(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunparse(parts._replace(netloc=f"{user}@{host}"))


def create_login(admin_url: str, *grants: str) -> Login:
    role = f"lamplighter_svc_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE ROLE {role} LOGIN")
        for grant in grants:
            admin.cursor().execute(grant.format(role=role))
    finally:
        admin.close()
    return Login(role=role, url=as_user(admin_url, role))


def drop_login(admin_url: str, login: Login) -> None:
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        cur = admin.cursor()
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login.role,))
        cur.execute(f"DROP OWNED BY {login.role}")  # grants made to it in this database
        cur.execute(f"DROP ROLE {login.role}")
    finally:
        admin.close()


@pytest.fixture
def enqueue_login(database_url):
    """A service's login role that was only told `GRANT lamplighter_enqueue TO my_service`."""
    login = create_login(database_url, "GRANT lamplighter_enqueue TO {role}")
    yield login
    drop_login(database_url, login)
