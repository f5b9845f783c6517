"""E-mail notifications over TLS against a real SMTP server on 127.0.0.1 (aiosmtpd) that speaks it:
STARTTLS on smtp://, TLS from the first byte on smtps://, and a certificate the client does not
trust refused before the password is sent. The server's certificate is self-signed for 127.0.0.1;
the client trusts it through SSL_CERT_FILE, which OpenSSL's default trust store reads (an
internal relay with a private CA is configured the same way)."""
from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import actors
from domain import notifications
from domain.notifications import Recipient
from domain.outcomes import RetryLater
from storage import notifications as notification_rows
from tests.conftest import use_database
from tests.smtp_server import PASSWORD, USER, Mailbox, free_port, serving

deliver = actors.notifications.deliver.fn
FROM = "Lamplighter <lamplighter@example.org>"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lamplighter test SMTP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("smtp-tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _server_context(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture
def starttls_server(certificate):
    """SMTP on 127.0.0.1 that offers STARTTLS, and AUTH only after it."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate,
                            tls_context=_server_context(certificate), require_starttls=True,
                            auth_require_tls=True, auth_required=True)
    with serving(controller):
        yield mailbox, port


@pytest.fixture
def smtps_server(certificate):
    """SMTP on 127.0.0.1 with TLS from the first byte (smtps)."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate,
                            ssl_context=_server_context(certificate), auth_require_tls=False, auth_required=True)
    with serving(controller):
        yield mailbox, port


def _write(key: str) -> int:
    return notifications.notify(Recipient.address("ada@example.org"), dedupe_key=key, kind="test.notice",
                                subject="Over TLS", text="Sent over TLS.", html="<p>Sent over TLS.</p>")


def test_starttls_is_spoken_and_the_mail_arrives(database_url, starttls_server, certificate, monkeypatch):
    mailbox, port = starttls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    use_database(database_url, LAMPLIGHTER_SMTP_URL=f"smtp://{USER}:{PASSWORD}@127.0.0.1:{port}",
                 LAMPLIGHTER_SMTP_FROM=FROM)
    notification_id = _write("tls-1")
    assert deliver(notification_id)["status"] == "delivered"
    [mail] = mailbox.received
    assert mail.rcpt_tos == ["ada@example.org"] and mail.message["Subject"] == "Over TLS"
    assert notification_rows.get(notification_id).status == "delivered"


def test_smtps_is_tls_from_the_first_byte(database_url, smtps_server, certificate, monkeypatch):
    mailbox, port = smtps_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    use_database(database_url, LAMPLIGHTER_SMTP_URL=f"smtps://{USER}:{PASSWORD}@127.0.0.1:{port}",
                 LAMPLIGHTER_SMTP_FROM=FROM)
    notification_id = _write("tls-2")
    assert deliver(notification_id)["status"] == "delivered"
    assert [m.message["Subject"] for m in mailbox.received] == ["Over TLS"]


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_an_untrusted_certificate_is_refused_before_the_password_goes(database_url, starttls_server, smtps_server,
                                                                      scheme, tmp_path, monkeypatch):
    mailbox, port = starttls_server if scheme == "smtp" else smtps_server
    empty_store = tmp_path / "no-cas.pem"
    empty_store.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_store))  # the test certificate is trusted by nobody
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    use_database(database_url, LAMPLIGHTER_SMTP_URL=f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}",
                 LAMPLIGHTER_SMTP_FROM=FROM)
    notification_id = _write(f"tls-untrusted-{scheme}")
    with pytest.raises(RetryLater, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed") as refused:
        deliver(notification_id)
    assert PASSWORD not in str(refused.value)
    assert mailbox.received == []
    row = notification_rows.get(notification_id)
    assert row.status == "pending" and row.attempts == 1 and PASSWORD not in (row.last_error or "")
