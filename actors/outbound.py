"""Outbound calls for actors: safe to point at a URL a user typed in. Every call has a timeout,
a bounded response, a redirect policy, and its failures speak the outcome vocabulary
(domain.outcomes).

dramatiq's TimeLimit raises in the actor's thread only between Python bytecodes: a socket read
that never returns is never interrupted. So nothing here waits without a bound —
LAMPLIGHTER_HTTP_CONNECT_TIMEOUT / LAMPLIGHTER_HTTP_READ_TIMEOUT unless the caller passes a
shorter one — and nothing reads more than LAMPLIGHTER_HTTP_MAX_RESPONSE_BYTES of a body (or the
call's ``max_bytes``), counted after decompression. Domain code does not import this module; an
actor passes ``http.request`` (or an adapter over it) to the domain function as its port.

    http = Outbound()
    response = http.request("POST", url, json=payload)   # a success (2xx), or raises:
    #   429/503... with Retry-After -> RetryLater(delay=Retry-After, plus up to 10% jitter)
    #   408, 425, 429, 5xx, network  -> RetryLater (the actor's retry schedule decides when)
    #   other 4xx                    -> PermanentFailure (retrying will not help)
    #   3xx                          -> PermanentFailure, unless the call allows redirects=N
    #   refused address, body over the limit, invalid URL -> PermanentFailure

Every connection goes through the SSRF guard (actors/outbound_guard.py): the host is resolved
once, every address is checked, and the connection goes to a checked address, so loopback,
private, link-local (cloud metadata), multicast and reserved addresses are refused unless
LAMPLIGHTER_OUTBOUND_ALLOW lists them; each redirect hop is checked again. Error messages name
the method, scheme, host and port only: never a path or query (a webhook URL's path or a
``?token=`` can be the secret), credentials, headers or the response body; and the library's
exception, whose text holds the full URL, is not chained onto them.
"""
from __future__ import annotations

import errno
import functools
import random
import smtplib
import ssl
from typing import Callable
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from actors.outbound_guard import AddressRefused, GuardedAdapter, OutboundGuard
from domain.outcomes import PermanentFailure, RetryLater
from storage import settings as settings_module

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A Retry-After is honoured and spread: up to 10% later than asked (at most 5 minutes later),
# never sooner, so the jobs one rate limit stopped do not all come back in the same second.
RETRY_AFTER_JITTER = 0.1
RETRY_AFTER_JITTER_MAX = 300.0
_READ_CHUNK = 64 * 1024


def only_2xx(status: int) -> bool:
    """The default success predicate: webhooks and APIs count only 2xx as delivered."""
    return 200 <= status < 300


class ResponseTooLarge(Exception):
    pass


class _FromSettings:
    """Marker: build the guard from LAMPLIGHTER_OUTBOUND_ALLOW."""


class Outbound:
    """A requests session behind the SSRF guard, with the platform's timeouts and limits.

    ``guard=None`` turns the guard off; only for URLs an operator configured (an identity
    provider on the private network), never for one a user supplied."""

    def __init__(self, *, session: requests.Session | None = None, connect_timeout: float | None = None,
                 read_timeout: float | None = None, max_bytes: int | None = None,
                 guard: OutboundGuard | None | type[_FromSettings] = _FromSettings,
                 rng: random.Random | None = None):
        current = settings_module.get()
        self.connect_timeout = connect_timeout or current.http_connect_timeout
        self.read_timeout = read_timeout or current.http_read_timeout
        self.max_bytes = max_bytes or current.http_max_response_bytes
        self.guard = OutboundGuard(current.outbound_allow) if guard is _FromSettings else guard
        self.rng = rng or random.Random()
        self.session = session or requests.Session()
        # No silent retries inside a call: the job's retry policy is the retry, and a POST
        # whose answer was lost must not be sent again behind the caller's back.
        # (read=False: a read timeout surfaces as itself, as requests' ReadTimeout.)
        no_retries = Retry(total=0, read=False, redirect=False, raise_on_status=False)
        if self.guard is not None:
            # No environment proxies or .netrc credentials for user-supplied hosts; no adapter
            # the caller mounted may bypass the guard.
            self.session.trust_env = False
            self.session.adapters.clear()
            adapter = GuardedAdapter(self.guard, max_retries=no_retries)
        else:
            adapter = requests.adapters.HTTPAdapter(max_retries=no_retries)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def timeout(self, requested=None) -> tuple[float, float]:
        """The caller's timeout, never longer than the configured one, never None."""
        if requested is None:
            return self.connect_timeout, self.read_timeout
        connect, read = requested if isinstance(requested, tuple) else (requested, requested)
        return min(connect or self.connect_timeout, self.connect_timeout), min(read or self.read_timeout,
                                                                                self.read_timeout)

    def request(self, method: str, url: str, *, timeout=None, redirects: int = 0,
                success: Callable[[int], bool] = only_2xx, max_bytes: int | None = None,
                **kwargs) -> requests.Response:
        """One call. ``redirects``: how many redirect hops to follow (none by default; each hop
        is checked by the guard again, and requests drops Authorization on a change of host).
        ``success``: which statuses the caller counts as done. ``max_bytes``: a lower body limit
        than the configured one. The returned response's body is already read (``.content``)."""
        for decided_here in ("allow_redirects", "stream", "proxies", "hooks"):
            if decided_here in kwargs:
                raise TypeError(f"Outbound.request: {decided_here}= is not accepted (see redirects=, max_bytes=)")
        what = f"{method} {describe(url)}"
        limit = min(max_bytes or self.max_bytes, self.max_bytes)
        timeouts = self.timeout(timeout)
        hooks = {"response": [functools.partial(read_bounded, max_bytes=limit)]}
        try:
            response = self.session.request(method, url, timeout=timeouts, allow_redirects=False, stream=True,
                                            hooks=hooks, **kwargs)
            history = []
            while response.is_redirect and len(history) < redirects:
                # response.next: requests' own next request (method rewritten, Authorization
                # dropped on a change of host); sent through the same guarded adapter.
                following = response.next
                history.append(response)
                response.close()
                response = self.session.send(following, timeout=timeouts, allow_redirects=False, stream=True,
                                             **{k: kwargs[k] for k in ("verify", "cert") if k in kwargs})
            response.history = history
        except AddressRefused as exc:
            raise PermanentFailure(f"{what}: {exc}") from None
        except ResponseTooLarge:
            raise PermanentFailure(f"{what}: response body over {limit} bytes; not read further") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader):
            raise PermanentFailure(f"{what}: invalid URL or header") from None
        except requests.RequestException as exc:
            raise RetryLater(f"{what}: {network_failure(exc)}") from None
        return self.judge(what, response, success, redirects)

    def judge(self, what: str, response: requests.Response, success: Callable[[int], bool],
              redirects: int) -> requests.Response:
        status = response.status_code
        if success(status):
            return response
        reason = f"{what}: HTTP {status}"
        if status in RETRYABLE_STATUSES:
            raise retry_later(response.headers.get("Retry-After"), reason, rng=self.rng)
        if response.is_redirect:
            allowed = "follows none" if redirects == 0 else f"follows at most {redirects}"
            raise PermanentFailure(f"{reason}, a redirect this call did not follow (it {allowed})")
        if status < 400:
            raise PermanentFailure(f"{reason}, not a success for this call")
        raise PermanentFailure(reason)

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.request("POST", url, **kwargs)


def read_bounded(response: requests.Response, *, max_bytes: int, **_hook_kwargs) -> requests.Response:
    """A response hook: read the body, at most ``max_bytes`` of it (decompressed), before
    requests does. requests reads a redirect's whole body to build the next request, even when
    redirects are not followed; as a hook, this runs first, on every response of every hop."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        response.close()
        raise ResponseTooLarge()
    body = bytearray()
    try:
        for chunk in response.iter_content(_READ_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise ResponseTooLarge()
    except ResponseTooLarge:
        response.close()
        raise
    response._content = bytes(body)  # what requests' own .content would hold; it reads no more
    response.close()  # the body is read: the connection goes back to the pool
    return response


def retry_later(retry_after: str | None, reason: str, *, rng: random.Random | None = None) -> RetryLater:
    """RetryLater honouring a ``Retry-After`` (seconds or HTTP date), spread by up to
    RETRY_AFTER_JITTER later; without one, the delay is the actor's retry policy's."""
    outcome = RetryLater.after(retry_after, reason)
    if outcome.delay is not None:
        spread = min(outcome.delay * RETRY_AFTER_JITTER, RETRY_AFTER_JITTER_MAX)
        outcome.delay += (rng or random).uniform(0.0, spread)
    return outcome


def describe(url: str) -> str:
    """``scheme://host:port`` of a URL: no user, password, path, query or fragment."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not host:
        return "(invalid URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def network_failure(exc: requests.RequestException) -> str:
    """What went wrong, in words that hold no URL: requests' and urllib3's messages repeat the
    path and query."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timed out"
    causes = list(_chain(exc))
    if any(type(c).__name__ == "ReadTimeoutError" for c in causes):
        return "read timed out"
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(c, ssl.SSLError) for c in causes):
        verify = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
        detail = f": {verify.verify_message}" if verify is not None and verify.verify_message else ""
        return f"TLS failed{detail}"
    if any(type(c).__name__ == "NameResolutionError" for c in causes):
        return "cannot resolve the host"
    code = next((c.errno for c in causes if isinstance(c, OSError) and c.errno in errno.errorcode), None)
    if code is not None:
        return f"connection failed ({errno.errorcode[code]})"
    return f"connection failed ({type(exc).__name__})"


def _chain(exc: BaseException):
    """``exc`` and every exception behind it: causes, contexts, urllib3's ``reason`` and the
    exceptions requests wraps in its ``args``."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]


def smtp(host: str, port: int = 587, *, timeout: float | None = None, implicit_tls: bool = False,
         context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """An SMTP connection whose every socket operation is bounded by the read timeout;
    ``implicit_tls``: TLS from the first byte (smtps, port 465), verified against ``context``
    (default: the system's trust store)."""
    current = settings_module.get()
    bound = min(timeout or current.http_read_timeout, current.http_read_timeout)
    if implicit_tls:
        return smtplib.SMTP_SSL(host, port, timeout=bound, context=context or ssl.create_default_context())
    return smtplib.SMTP(host, port, timeout=bound)
