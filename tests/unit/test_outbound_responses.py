"""What an outbound call makes of the answer (actors/outbound.py), against real HTTP servers on
127.0.0.1 (allowed explicitly): redirects, the success predicate, statuses and network errors
as outcomes with Retry-After and jitter, the body limit, and no secret in any error."""
from __future__ import annotations

import datetime
import gzip
import random
import socket
import threading
import traceback
from email.utils import format_datetime

import pytest
from werkzeug import Response

from actors.outbound import Outbound, describe, retry_later
from actors.outbound_guard import OutboundGuard
from domain.outcomes import PermanentFailure, RetryLater
from tests.unit.test_outbound import LocalOnly, resolving


def local(**guard_kwargs) -> Outbound:
    """Outbound allowed to reach 127.0.0.1 (only)."""
    return Outbound(guard=OutboundGuard(["127.0.0.1"], **guard_kwargs))


@pytest.fixture
def server(httpserver_ipv4):
    return httpserver_ipv4


# ---- redirects -------------------------------------------------------------------------------------

def test_no_redirect_is_followed_by_default(server):
    server.expect_request("/start").respond_with_data("", status=302, headers={"Location": "/next"})
    server.expect_request("/next").respond_with_data("followed")
    with pytest.raises(PermanentFailure, match=r"HTTP 302, a redirect this call did not follow \(it follows none\)"):
        local().post(server.url_for("/start"), json={"event": "x"})
    assert [request.path for request, _ in server.log] == ["/start"]


def test_redirects_are_followed_up_to_the_calls_limit(server):
    server.expect_request("/one").respond_with_data("", status=301, headers={"Location": "/two"})
    server.expect_request("/two").respond_with_data("", status=307, headers={"Location": "/three"})
    server.expect_request("/three").respond_with_data("arrived")
    response = local().get(server.url_for("/one"), redirects=2)
    assert response.text == "arrived" and [r.status_code for r in response.history] == [301, 307]
    with pytest.raises(PermanentFailure, match="HTTP 307, a redirect this call did not follow .it follows at most 1"):
        local().get(server.url_for("/one"), redirects=1)


def test_each_redirect_hop_is_checked_again(server):
    connect = LocalOnly()
    resolve = resolving({"metadata.example": ["169.254.169.254"]})
    server.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": "http://metadata.example/latest/meta-data/"})
    with pytest.raises(PermanentFailure, match="metadata.example resolves to 169.254.169.254"):
        local(resolve=resolve, connect=connect).get(server.url_for("/start"), redirects=5)
    assert {target[0] for target in connect.targets} == {"127.0.0.1"}


def test_a_redirect_to_another_host_drops_the_authorization_header(server):
    resolve = resolving({"a.example": ["127.0.0.1"], "b.example": ["127.0.0.1"]})
    server.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": f"http://b.example:{server.port}/landing"})
    server.expect_request("/landing").respond_with_data("ok")
    local(resolve=resolve).get(f"http://a.example:{server.port}/start", redirects=1,
                               headers={"Authorization": "Bearer secret-token"})
    (first, _), (second, _) = server.log
    assert first.headers.get("Authorization") == "Bearer secret-token"
    assert second.headers.get("Authorization") is None


# ---- success, statuses and network errors as outcomes ---------------------------------------------

def test_only_2xx_counts_by_default_and_the_caller_can_say_otherwise(server):
    server.expect_request("/created").respond_with_data("", status=201)
    server.expect_request("/accepted").respond_with_data("", status=202)
    server.expect_request("/not-modified").respond_with_data("", status=304)
    assert local().post(server.url_for("/created")).status_code == 201
    with pytest.raises(PermanentFailure, match="HTTP 202, not a success for this call"):
        local().post(server.url_for("/accepted"), success=lambda status: status in (200, 201))
    with pytest.raises(PermanentFailure, match="HTTP 304, not a success"):
        local().get(server.url_for("/not-modified"))
    assert local().get(server.url_for("/not-modified"), success=lambda s: s in (200, 304)).status_code == 304


@pytest.mark.parametrize("status, outcome", [(400, PermanentFailure), (401, PermanentFailure), (404, PermanentFailure),
                                             (409, PermanentFailure), (408, RetryLater), (425, RetryLater),
                                             (429, RetryLater), (500, RetryLater), (502, RetryLater),
                                             (503, RetryLater), (504, RetryLater)])
def test_statuses_map_to_outcomes(server, status, outcome):
    server.expect_request("/hook").respond_with_data("no", status=status)
    with pytest.raises(outcome) as raised:
        local().post(server.url_for("/hook"))
    assert type(raised.value) is outcome and str(raised.value).endswith(f": HTTP {status}")
    if outcome is RetryLater:
        assert raised.value.delay is None  # no Retry-After: the actor's retry policy decides


def test_retry_after_in_seconds_and_as_a_date_is_honoured_with_jitter_never_sooner(server):
    server.expect_request("/seconds").respond_with_data("", status=429, headers={"Retry-After": "120"})
    in_two_minutes = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=120)
    server.expect_request("/date").respond_with_data(
        "", status=503, headers={"Retry-After": format_datetime(in_two_minutes, usegmt=True)})
    for path, low in (("/seconds", 120.0), ("/date", 115.0)):
        with pytest.raises(RetryLater) as raised:
            local().post(server.url_for(path))
        assert low <= raised.value.delay <= 132.0, (path, raised.value.delay)


def test_retry_after_delays_are_spread_by_up_to_a_tenth():
    delays = [retry_later("100", "rate limited", rng=random.Random(seed)).delay for seed in range(50)]
    assert all(100.0 <= d <= 110.0 for d in delays)
    assert max(delays) - min(delays) > 5.0  # spread, not a constant offset
    assert retry_later("100000", "x", rng=random.Random(1)).delay <= 86400 + 300  # capped, jitter at most 5 min
    assert retry_later(None, "x").delay is None


def test_network_errors_are_retried_later(server, listener_closed_port):
    with pytest.raises(RetryLater, match=r"connection failed \(ECONNREFUSED\)"):
        local().post(f"http://127.0.0.1:{listener_closed_port}/hook")
    with pytest.raises(RetryLater, match="cannot resolve the host"):
        Outbound(guard=OutboundGuard(resolve=_unresolvable)).post("http://no-such-host.example/hook")


def test_a_read_that_outlasts_the_timeout_is_retried_later(server):
    release = threading.Event()

    def stall(_request):
        release.wait(5)
        return Response("late")
    server.expect_request("/slow").respond_with_handler(stall)
    try:
        with pytest.raises(RetryLater, match="read timed out"):
            local().get(server.url_for("/slow"), timeout=(2, 0.3))
    finally:
        release.set()


def _unresolvable(host, port):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def listener_closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return port


# ---- bounded responses -----------------------------------------------------------------------------

def test_a_declared_length_over_the_limit_fails_without_reading(server):
    server.expect_request("/big").respond_with_data(b"x" * 300_000)
    with pytest.raises(PermanentFailure, match="response body over 100000 bytes; not read further"):
        local().get(server.url_for("/big"), max_bytes=100_000)
    assert local().get(server.url_for("/big"), max_bytes=300_000).content == b"x" * 300_000


def _endless(status: int, sent: list, headers=None):
    """A handler streaming 64 KiB chunks with no Content-Length, 1 GiB if nobody stops reading."""
    def handler(_request):
        def chunks():
            for _ in range(16_384):
                sent.append(1)
                yield b"y" * 65_536
        return Response(chunks(), status=status, headers=headers, direct_passthrough=True)
    return handler


def test_a_stream_without_length_is_cut_at_the_limit(server):
    sent = []
    server.expect_request("/stream").respond_with_handler(_endless(200, sent))
    with pytest.raises(PermanentFailure, match="response body over 1048576 bytes"):
        local().get(server.url_for("/stream"), max_bytes=1_048_576)
    # Stopped after 1 MiB plus what the sockets' buffers held, not 1 GiB.
    assert len(sent) < 1024


def test_the_limit_counts_decompressed_bytes(server):
    bomb = gzip.compress(b"\0" * 20_000_000)  # ~20 KB on the wire
    server.expect_request("/bomb").respond_with_data(bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(PermanentFailure, match="response body over 1048576 bytes"):
        local().get(server.url_for("/bomb"), max_bytes=1_048_576)


def test_an_unfollowed_redirect_body_is_bounded_too(server):
    # requests reads a redirect's whole body to prepare the next hop, even when it follows none.
    sent = []
    server.expect_request("/moved").respond_with_handler(_endless(302, sent, {"Location": "/elsewhere"}))
    with pytest.raises(PermanentFailure, match="response body over 1048576 bytes"):
        local().get(server.url_for("/moved"), max_bytes=1_048_576)
    assert len(sent) < 1024


def test_a_call_can_lower_the_limit_but_not_raise_it(server):
    server.expect_request("/body").respond_with_data(b"b" * 3000)
    http = Outbound(guard=OutboundGuard(["127.0.0.1"]), max_bytes=2000)
    with pytest.raises(PermanentFailure, match="over 2000 bytes"):
        http.get(server.url_for("/body"), max_bytes=5000)
    assert len(Outbound(guard=OutboundGuard(["127.0.0.1"])).get(server.url_for("/body")).content) == 3000
    with pytest.raises(TypeError, match="stream"):
        http.get(server.url_for("/body"), stream=True)


# ---- no secret in an error -------------------------------------------------------------------------

SECRETS = ("hunter2", "tok-123", "Bearer", "sig-456", "/services/T0/B0")


def _everything_said(outcome: BaseException) -> str:
    """The message and the traceback as a history row would keep them, from the call down (the
    test's own line, which holds the secrets, left out)."""
    return str(outcome) + "".join(traceback.format_exception(type(outcome), outcome, outcome.__traceback__.tb_next))


@pytest.mark.parametrize("case", ["status", "refused", "network", "too_large", "invalid"])
def test_errors_carry_no_credentials_path_query_or_headers(server, case, listener_closed_port):
    server.expect_request("/services/T0/B0").respond_with_data("x" * 5000, status=500)
    port = {"status": server.port, "too_large": server.port, "network": listener_closed_port}.get(case, server.port)
    host = "10.0.0.1" if case == "refused" else "127.0.0.1"
    url = f"http://app:hunter2@{host}:{port}/services/T0/B0?token=tok-123&sig=sig-456"
    if case == "invalid":
        url = "http://app:hunter2@[::1/services/T0/B0?token=tok-123"
    connect = LocalOnly()
    with pytest.raises((PermanentFailure, RetryLater)) as raised:
        local(connect=connect).post(url, headers={"Authorization": "Bearer tok-123"}, json={"secret": "sig-456"},
                                    max_bytes=1024 if case == "too_large" else None)
    said = _everything_said(raised.value)
    assert [s for s in SECRETS if s in said] == []
    assert raised.value.__cause__ is None and (raised.value.__context__ is None or raised.value.__suppress_context__)
    assert connect.targets in ([], [("127.0.0.1", port)])


def test_describe_keeps_only_scheme_host_and_port():
    assert describe("https://u:p@hooks.example:8443/a/b?token=t#f") == "https://hooks.example:8443"
    assert describe("http://[::1]:80/x") == "http://[::1]:80"
    assert describe("not a url") == "(invalid URL)"
