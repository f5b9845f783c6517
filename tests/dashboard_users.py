"""Dashboard users of each role and signed-in HTTP sessions for them, over the web app on
uvicorn (tests/web_api.py's ``api`` fixture)."""
from __future__ import annotations

import re

import requests

PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "operator", "superadmin")


def create_user(role: str, *, tenant: str | None = None, email: str | None = None) -> str:
    from domain import users

    email = email or f"{role}{'-' + tenant if tenant else ''}@example.com"
    users.create_user(email=email, display_name=role, role=role, password=PASSWORD, tenant_id=tenant, by="tests")
    return email


def signed_in(url: str, email: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{url}/dashboard/login", data={"email": email, "password": password, "next": ""},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text
    return session


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)
