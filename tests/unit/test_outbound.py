"""Outbound HTTP safe for user-supplied URLs (actors/outbound.py, actors/outbound_guard.py),
against real HTTP(S) servers on 127.0.0.1.

Every address other than 127.0.0.1 comes from a stubbed resolver, and every test that could
connect to such an address passes a ``connect`` that refuses to leave this machine: no test
sends a packet to a private or public address."""
from __future__ import annotations

import datetime
import socket
import ssl

import pytest

from actors.outbound import Outbound
from actors.outbound_guard import OutboundGuard, refusal
from domain.outcomes import PermanentFailure, RetryLater
from storage import settings as settings_module

PUBLIC = "93.184.215.14"  # a global address; never connected to (see public_connect)


def guard(allow=(), resolve=None, connect=None) -> OutboundGuard:
    kwargs = {}
    if resolve is not None:
        kwargs["resolve"] = resolve
    if connect is not None:
        kwargs["connect"] = connect
    return OutboundGuard(allow, **kwargs)


def resolving(answers: dict[str, list[str]]):
    """A resolver for made-up names; numeric hosts answer themselves. Records every question."""
    asked = []

    def resolve(host, port):
        asked.append(host)
        return answers.get(host, [host])
    resolve.asked = asked
    return resolve


class LocalOnly:
    """``connect`` for the guard: real connections to 127.0.0.1; any other address is recorded
    and refused as if the network said no, without a packet leaving the machine."""

    def __init__(self):
        self.targets = []
        from urllib3.util.connection import create_connection
        self.real = create_connection

    def __call__(self, address, *args, **kwargs):
        self.targets.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(111, "Connection refused (stub: not on this machine)")
        return self.real(address, *args, **kwargs)


class Listener:
    """A bare TCP listener on 127.0.0.1: pending() says whether anything connected to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def pending(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.sock.close()


# ---- the guard on loopback, allow-list off and on -------------------------------------------------

def test_loopback_is_refused_without_the_allow_list_and_nothing_connects(listener):
    port = listener.port
    for url in (f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/hook",
                f"http://2130706433:{port}/hook", f"http://[::ffff:127.0.0.1]:{port}/hook"):
        with pytest.raises(PermanentFailure) as refused:
            Outbound(guard=guard()).post(url, json={"event": "x"})
        message = str(refused.value)
        assert message.startswith("POST http://") and "loopback" in message, message
        assert "LAMPLIGHTER_OUTBOUND_ALLOW" in message
    assert not listener.pending()  # not even a TCP handshake


def test_loopback_allowed_explicitly_reaches_the_server(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    response = Outbound(guard=guard(["127.0.0.1"])).post(httpserver_ipv4.url_for("/hook"), json={"event": "x"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    httpserver_ipv4.check_assertions()


def test_the_allow_list_comes_from_the_setting(httpserver_ipv4, monkeypatch):
    monkeypatch.setattr(settings_module, "_current", settings_module._current)  # restored afterwards
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    url = httpserver_ipv4.url_for("/hook")
    settings_module.configure(settings_module.load({"LAMPLIGHTER_OUTBOUND_ALLOW": "10.9.0.0/16, 127.0.0.1"}))
    assert Outbound().get(url).text == "ok"
    settings_module.configure(settings_module.load({"LAMPLIGHTER_OUTBOUND_ALLOW": "10.9.0.0/16"}))
    with pytest.raises(PermanentFailure, match="loopback"):
        Outbound().get(url)
    assert len(httpserver_ipv4.log) == 1


# ---- every refused range, through a stubbed resolver ---------------------------------------------

REFUSED = [
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.254", "private"),
    ("192.168.1.10", "private"), ("169.254.169.254", "cloud metadata"), ("169.254.7.7", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"), ("127.0.0.1", "loopback"),
    ("127.5.6.7", "loopback"), ("0.0.0.0", "unspecified"), ("0.1.2.3", "not globally routable"),
    ("224.0.0.251", "multicast"), ("239.255.255.250", "multicast"), ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"), ("198.18.0.1", "not globally routable"),
    ("192.0.2.1", "not globally routable"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fe80::1%1", "link-local"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"), ("ff02::1", "multicast"), ("fec0::1", "site-local"),
    ("2001:db8::1", "not globally routable"), ("2001::1", "not globally routable"), ("100::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback, as 127.0.0.1"), ("::ffff:10.0.0.1", "private, as 10.0.0.1"),
    ("::ffff:169.254.169.254", "cloud metadata"), ("::127.0.0.1", "loopback, as 127.0.0.1"),
    ("64:ff9b::7f00:1", "loopback, as 127.0.0.1"), ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:c0a8:101::1", "private, as 192.168.1.1"),
]


@pytest.mark.parametrize("address, reason", REFUSED)
def test_refused_ranges_never_connect(address, reason):
    connect = LocalOnly()
    http = Outbound(guard=guard(resolve=resolving({"hooks.customer.example": [address]}), connect=connect))
    with pytest.raises(PermanentFailure) as refused:
        http.post("https://hooks.customer.example/deliver", json={})
    assert f"hooks.customer.example resolves to {address.split('%')[0]}" in str(refused.value)
    assert reason in str(refused.value)
    assert connect.targets == []


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808"])
def test_global_addresses_pass(address):
    assert refusal(address) is None


def test_an_allowed_network_or_host_opens_exactly_that():
    resolve = resolving({"metadata.internal": ["169.254.169.254"], "db.internal": ["10.0.0.5"]})
    opened = guard(["10.0.0.0/24", "metadata.internal"], resolve=resolve)
    assert opened.addresses("metadata.internal", 80) == ["169.254.169.254"]
    assert opened.addresses("db.internal", 80) == ["10.0.0.5"]
    assert opened.addresses("::ffff:10.0.0.9", 80) == ["::ffff:10.0.0.9"]  # judged as 10.0.0.9
    with pytest.raises(Exception, match="10.0.1.5 .private"):
        opened.addresses("10.0.1.5", 80)


def test_a_name_answering_any_refused_address_is_refused():
    connect = LocalOnly()
    resolve = resolving({"mixed.example": [PUBLIC, "10.0.0.1"]})
    with pytest.raises(PermanentFailure, match="resolves to 10.0.0.1 .private"):
        Outbound(guard=guard(resolve=resolve, connect=connect)).get("http://mixed.example/")
    assert connect.targets == []


def test_bad_allow_list_entries_stop_start_up():
    with pytest.raises(settings_module.SettingsError, match="^LAMPLIGHTER_OUTBOUND_ALLOW: 'bad host!'"):
        settings_module.load({"LAMPLIGHTER_OUTBOUND_ALLOW": "127.0.0.1,bad host!"})
    with pytest.raises(settings_module.SettingsError, match="^LAMPLIGHTER_OUTBOUND_ALLOW"):
        settings_module.load({"LAMPLIGHTER_OUTBOUND_ALLOW": "10.0.0.0/33"})
    assert settings_module.load({"LAMPLIGHTER_OUTBOUND_ALLOW": " hooks.internal , ::1 ,10.0.0.0/8"}).outbound_allow \
        == ("hooks.internal", "::1", "10.0.0.0/8")


# ---- DNS rebinding: the connection goes to the address that was checked ----------------------------

def test_rebinding_cannot_swap_the_checked_address_for_loopback(httpserver_ipv4):
    """The name answers a public address first and loopback after. The call connects to the
    public address it checked (stubbed: refused off this machine), never to loopback; the next
    call resolves again, sees loopback, and is refused."""
    port = httpserver_ipv4.port
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    asked = []

    def rebinding(host, _port):
        asked.append(host)
        return next(answers)
    connect = LocalOnly()
    http = Outbound(guard=guard(resolve=rebinding, connect=connect))
    httpserver_ipv4.expect_request("/hook").respond_with_data("loopback reached")
    with pytest.raises(RetryLater, match="ECONNREFUSED"):
        http.post(f"http://rebind.example:{port}/hook")
    assert asked == ["rebind.example"]  # resolved once for the connection
    assert connect.targets == [(PUBLIC, port)]
    with pytest.raises(PermanentFailure, match="rebind.example resolves to 127.0.0.1 .loopback"):
        http.post(f"http://rebind.example:{port}/hook")
    assert connect.targets == [(PUBLIC, port)]
    assert httpserver_ipv4.log == []


def test_the_host_header_stays_the_url_host_when_connecting_to_the_checked_address(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    resolve = resolving({"hooks.customer.example": ["127.0.0.1"]})
    http = Outbound(guard=guard(["127.0.0.1"], resolve=resolve))
    assert http.get(f"http://hooks.customer.example:{httpserver_ipv4.port}/hook").text == "ok"
    [(request, _)] = httpserver_ipv4.log
    assert request.headers["Host"] == f"hooks.customer.example:{httpserver_ipv4.port}"


def _certificates(tmp_path, name):
    """A CA and a server certificate for ``name`` (a DNS name only, no IP address)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(subject, key, issuer, issuer_key, *extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lamplighter test CA")])
    ca = issue(ca_name, ca_key, ca_name, ca_key, (x509.BasicConstraints(ca=True, path_length=None), True),
               (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False), True))
    leaf = issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key, ca_name, ca_key,
                 (x509.SubjectAlternativeName([x509.DNSName(name)]), False),
                 (x509.BasicConstraints(ca=False, path_length=None), True),
                 (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf.key"


def test_tls_verifies_the_certificate_and_sends_sni_for_the_url_host(tmp_path):
    from pytest_httpserver import HTTPServer

    ca, cert, key = _certificates(tmp_path, "hooks.customer.example")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server_names = []
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    try:
        server.expect_request("/hook").respond_with_data("tls ok")
        resolve = resolving({"hooks.customer.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        http = Outbound(guard=guard(["127.0.0.1"], resolve=resolve))
        response = http.get(f"https://hooks.customer.example:{server.port}/hook", verify=str(ca))
        assert response.text == "tls ok"
        assert server_names == ["hooks.customer.example"]
        with pytest.raises(RetryLater, match="TLS failed: Hostname mismatch"):
            http.get(f"https://other.example:{server.port}/hook", verify=str(ca))
    finally:
        server.clear()
        server.stop()


def test_a_proxy_would_bypass_the_guard_and_is_refused(listener):
    http = Outbound(guard=guard(["127.0.0.1"]))
    http.session.proxies = {"http": f"http://127.0.0.1:{listener.port}"}
    with pytest.raises(PermanentFailure, match="proxy"):
        http.get("http://hooks.customer.example/")
    with pytest.raises(TypeError, match="proxies"):
        http.get("http://hooks.customer.example/", proxies={})
    assert not listener.pending()
