"""Zitadel (API v2) over HTTP: the adapter behind domain.accounts.IdentityProvider.

Every call has a timeout and no HTTP-level retry: the request table's schedule is the retry
policy. Answers are mapped onto the domain's errors:

* 409                                   -> AlreadyExists
* 400, 401, 403, 404 (and other 4xx)    -> PermanentProviderError, with Zitadel's message
* 408, 429, 5xx, timeouts, network      -> RetryableProviderError (429/503: Retry-After kept)

Zitadel's error body is ``{"code": ..., "message": ..., "details": [...]}`` (``code`` is a
gRPC code, a number through the REST gateway or a name through connect). Request bodies,
which hold the password, are never logged nor put in an error.
"""
from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from domain.accounts import (AlreadyExists, HumanUser, PermanentProviderError, ProviderUser,
                             RetryableProviderError)

if TYPE_CHECKING:  # imported where used: a worker that never calls Zitadel starts ~60 ms sooner
    import requests

# gRPC status codes by number, as the REST gateway reports them.
GRPC_CODES = {
    0: "ok", 1: "cancelled", 2: "unknown", 3: "invalid_argument", 4: "deadline_exceeded", 5: "not_found",
    6: "already_exists", 7: "permission_denied", 8: "resource_exhausted", 9: "failed_precondition",
    10: "aborted", 11: "out_of_range", 12: "unimplemented", 13: "internal", 14: "unavailable",
    15: "data_loss", 16: "unauthenticated",
}
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def error_message(response: requests.Response) -> str:
    """``Zitadel 400 invalid_argument: <message>`` from Zitadel's JSON error, or the start of
    whatever else came back (a proxy's HTML page)."""
    code, text = None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code")
        code = GRPC_CODES.get(code, code) if isinstance(code, int) else code
        text = body.get("message")
    if not text:
        text = " ".join(response.text.split())[:200] or response.reason or "no body"
    return f"Zitadel {response.status_code}{f' {code}' if code else ''}: {text}"


class ZitadelClient:
    """A requests session bound to one Zitadel instance and one personal access token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.session = session or requests.Session()
        # Explicitly no retries here (urllib3 would otherwise be configured per adapter).
        self.session.mount("http://", HTTPAdapter(max_retries=Retry(total=0, raise_on_status=False)))
        self.session.mount("https://", HTTPAdapter(max_retries=Retry(total=0, raise_on_status=False)))
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json",
                                     "User-Agent": "lamplighter-accounts"})

    def __enter__(self) -> "ZitadelClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # ---- IdentityProvider --------------------------------------------------------------------

    def create_human_user(self, user: HumanUser) -> str:
        body = {
            "userId": user.user_id,
            "organization": {"orgId": user.organization_id},
            "username": user.username,
            "profile": {"givenName": user.given_name, "familyName": user.family_name},
            "email": {"email": user.email},
        }
        if user.password is not None:
            body["password"] = {"password": user.password, "changeRequired": user.password_change_required}
        response = self._call("POST", "/v2/users/human", json=body)
        return (self._json(response).get("userId") or user.user_id)

    def get_user(self, user_id: str) -> ProviderUser | None:
        response = self._call("GET", f"/v2/users/{quote(user_id, safe='')}", missing_ok=True)
        if response is None:
            return None
        found = self._json(response).get("user") or {}
        return ProviderUser(user_id=found.get("userId") or user_id,
                            organization_id=(found.get("details") or {}).get("resourceOwner", ""),
                            username=found.get("username", ""))

    def grant_roles(self, user_id: str, organization_id: str, project_id: str, role_keys: tuple[str, ...]) -> None:
        # Zitadel's user grant (management API): 409 when the user already has a grant on the project.
        self._call("POST", f"/management/v1/users/{quote(user_id, safe='')}/grants",
                   json={"projectId": project_id, "roleKeys": list(role_keys)},
                   headers={"x-zitadel-orgid": organization_id})

    # ---- plumbing ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json=None, headers=None, missing_ok: bool = False):
        import requests

        what = f"{method} {path}"
        try:
            response = self.session.request(method, self.base_url + path, json=json, headers=headers,
                                            timeout=(self.timeout, self.timeout), allow_redirects=False)
        except requests.Timeout:
            raise RetryableProviderError(f"Zitadel did not answer {what} within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise RetryableProviderError(f"cannot reach Zitadel for {what}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status == 404 and missing_ok:
            return None
        message = error_message(response)
        if status == 409:
            raise AlreadyExists(message, status=status)
        if status in RETRYABLE_STATUSES or status >= 500:
            raise RetryableProviderError(message, status=status,
                                         retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise PermanentProviderError(message, status=status)

    @staticmethod
    def _json(response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            raise RetryableProviderError(f"Zitadel answered {response.status_code} without JSON") from None
        return body if isinstance(body, dict) else {}
