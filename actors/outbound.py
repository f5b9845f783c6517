"""Outbound calls for actors: every call has a timeout, and its failures speak the outcome
vocabulary (domain.outcomes).

dramatiq's TimeLimit raises in the actor's thread only between Python bytecodes: a socket read
that never returns is never interrupted. So nothing here waits without a bound —
LAMPLIGHTER_HTTP_CONNECT_TIMEOUT / LAMPLIGHTER_HTTP_READ_TIMEOUT unless the caller passes a
shorter one. Domain code does not import this module; an actor passes ``http.request`` (or an
adapter over it) to the domain function as its port.

    http = Outbound()
    response = http.request("POST", url, json=payload)   # 2xx/3xx, or raises:
    #   429/503 with Retry-After   -> RetryLater(delay=Retry-After)
    #   408, 425, 429, 5xx, network -> RetryLater (the actor's retry schedule decides when)
    #   other 4xx                   -> PermanentFailure (retrying will not help)
"""
from __future__ import annotations

import smtplib
import ssl
from urllib.parse import urlsplit

import requests

from domain.outcomes import PermanentFailure, RetryLater
from storage import settings as settings_module

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Outbound:
    def __init__(self, *, session: requests.Session | None = None, connect_timeout: float | None = None,
                 read_timeout: float | None = None):
        current = settings_module.get()
        self.session = session or requests.Session()
        self.connect_timeout = connect_timeout or current.http_connect_timeout
        self.read_timeout = read_timeout or current.http_read_timeout

    def timeout(self, requested=None) -> tuple[float, float]:
        """The caller's timeout, never longer than the configured one, never None."""
        if requested is None:
            return self.connect_timeout, self.read_timeout
        connect, read = requested if isinstance(requested, tuple) else (requested, requested)
        return min(connect or self.connect_timeout, self.connect_timeout), min(read or self.read_timeout,
                                                                                self.read_timeout)

    def request(self, method: str, url: str, *, timeout=None, **kwargs) -> requests.Response:
        host = urlsplit(url).netloc
        try:
            response = self.session.request(method, url, timeout=self.timeout(timeout), **kwargs)
        except requests.Timeout as exc:
            raise RetryLater(f"{method} {host}: timed out ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            raise RetryLater(f"{method} {host}: connection failed ({type(exc).__name__})") from exc
        status = response.status_code
        if status < 400:
            return response
        reason = f"{method} {host}: HTTP {status}"
        if status in RETRYABLE_STATUSES:
            raise RetryLater.after(response.headers.get("Retry-After"), reason)
        raise PermanentFailure(reason)

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.request("POST", url, **kwargs)


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
