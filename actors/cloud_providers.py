"""A cloud provider over HTTP: the adapter behind domain.integrations.Provider, on actors/outbound.py.

* Token endpoint (RFC 6749 §6): a form-encoded POST, ``grant_type=refresh_token``. The client
  authenticates with HTTP Basic (``client_secret_basic``, §2.3.1: id and secret form-encoded,
  then base64), or with ``client_id`` and ``client_secret`` in the body (``client_secret_post``)
  where the provider is configured so. A 400/401 with an OAuth error body (§5.2) is
  :class:`TokenRefused`; 429/5xx/network are Outbound's RetryLater (Retry-After honoured).
* Userinfo: GET with ``Authorization: Bearer``; 2xx accepted, 401 refused.
* Files: GET ``files_url?page_size=N[&cursor=C]`` with the bearer token, answering
  ``{"files": [{"id", "name", "path", "size", "mime_type", "modified_at"}], "next_cursor": ...}``.

Secrets go into the request only: Outbound's errors name the method, scheme, host and port, and
the text a provider sends back (an ``error_description``) is scrubbed of the secrets sent.
"""
from __future__ import annotations

import base64
from datetime import datetime
from urllib.parse import quote_plus

from actors.outbound import Outbound, describe, only_2xx
from domain.errors import InvalidInput
from domain.integrations import FilePage, TokenRefused, TokenResponse, token_response
from domain.outcomes import PermanentFailure
from storage import integrations as integration_rows
from storage.integrations import CloudProvider

DESCRIPTION_LIMIT = 200


def basic_credentials(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: each part form-urlencoded, joined by a colon, base64."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


class OAuthProvider:
    def __init__(self, provider: CloudProvider, http: Outbound | None = None):
        self.provider = provider
        self.http = http or Outbound()

    def refresh(self, refresh_token: str) -> TokenResponse:
        secret = integration_rows.reveal(self.provider.client_secret)
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        headers = {"Accept": "application/json"}
        if self.provider.client_auth_method == "client_secret_post":
            form.update(client_id=self.provider.client_id, client_secret=secret)
        else:
            headers["Authorization"] = basic_credentials(self.provider.client_id, secret)
        what = f"token endpoint {describe(self.provider.token_url)}"
        response = self.http.post(self.provider.token_url, data=form, headers=headers,
                                  success=lambda status: only_2xx(status) or status in (400, 401))
        body = _json(response, what)
        secrets = (secret, refresh_token)
        if response.status_code in (400, 401):
            error = body.get("error")
            if not isinstance(error, str) or not error:
                raise PermanentFailure(f"{what}: HTTP {response.status_code} without an OAuth error")
            description = body.get("error_description")
            description = scrub(description, secrets)[:DESCRIPTION_LIMIT] if isinstance(description, str) else None
            raise TokenRefused(scrub(error, secrets)[:64], description)
        try:
            return token_response(body)
        except InvalidInput as exc:
            raise PermanentFailure(f"{what}: {exc}") from None

    def userinfo(self, access_token: str) -> bool:
        response = self.http.get(self.provider.userinfo_url, headers=_bearer(access_token),
                                 success=lambda status: only_2xx(status) or status == 401)
        return response.status_code != 401

    def list_files(self, access_token: str, cursor: str | None, page_size: int) -> FilePage:
        params = {"page_size": page_size, **({"cursor": cursor} if cursor else {})}
        what = f"files endpoint {describe(self.provider.files_url)}"
        body = _json(self.http.get(self.provider.files_url, params=params, headers=_bearer(access_token)), what)
        files, next_cursor = body.get("files"), body.get("next_cursor")
        if not isinstance(files, list) or not all(isinstance(f, dict) and f.get("id") not in (None, "") for f in files):
            raise PermanentFailure(f"{what}: expected {{\"files\": [{{\"id\": ...}}, ...]}}")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise PermanentFailure(f"{what}: next_cursor must be a string or null")
        return FilePage(files=[_file(f) for f in files], next_cursor=next_cursor or None)


def _bearer(access_token: str) -> dict:
    return {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}


def _json(response, what: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise PermanentFailure(f"{what}: HTTP {response.status_code}, not JSON") from None
    if not isinstance(body, dict):
        raise PermanentFailure(f"{what}: HTTP {response.status_code}, not a JSON object")
    return body


def _file(entry: dict) -> dict:
    size = entry.get("size")
    name = str(entry.get("name") or entry["id"])
    return {"id": str(entry["id"]), "name": name, "path": str(entry.get("path") or name),
            "size": size if isinstance(size, int) and not isinstance(size, bool) else None,
            "mime_type": entry.get("mime_type") if isinstance(entry.get("mime_type"), str) else None,
            "modified_at": _instant(entry.get("modified_at"))}


def _instant(value: object) -> str | None:
    """An ISO 8601 time as given, or None: one bad date must not refuse the whole page."""
    if not isinstance(value, str):
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value
