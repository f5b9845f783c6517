"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the notification outbox's tests: it keeps what
it receives, can refuse the next N messages with a 4xx or 5xx reply, and can require a password.

Use it as a fixture: ``from tests.smtp_server import smtp_server  # noqa: F401`` in a test module.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "mailer"
PASSWORD = "smtp-pa55word-never-logged"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    received: list[Received] = field(default_factory=list)
    refuse_next: int = 0  # refuse this many messages at DATA ...
    refusal: str = "451 4.3.0 Mailbox temporarily unavailable, try again later"  # ... with this reply
    refuse_auth: int = 0  # refuse this many AUTH attempts (smtplib tries each mechanism) ...
    auth_refusal: str = "454 4.7.0 Temporary authentication failure"  # ... with this reply
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return self.refusal
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          message_from_bytes(envelope.original_content, policy=policy.default)))
        return "250 2.0.0 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if self.refuse_auth > 0:
            self.refuse_auth -= 1
            return AuthResult(success=False, handled=False, message=self.auth_refusal)
        ok = auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def serving(controller: Controller):
    """Run an aiosmtpd ``controller`` for the ``with`` block, its INFO lines silenced.

    aiosmtpd logs every connection's end at INFO from its own thread, often after the test that
    made it has ended and pytest has closed the stream that test's log handler writes to: each such
    line was a "--- Logging error ---" traceback in the suite's output. What the tests check is the
    mail, not the stand-in's chatter; its warnings and errors still show."""
    chatter = logging.getLogger("mail.log")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
        chatter.setLevel(level)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int

    def url(self, *, password: str = PASSWORD) -> str:
        """LAMPLIGHTER_SMTP_URL for this server: plain SMTP (no STARTTLS) with a login."""
        return f"smtp://{USER}:{password}@127.0.0.1:{self.port}?starttls=0"


@pytest.fixture
def smtp_server():
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate,
                            auth_require_tls=False, auth_required=True)
    with serving(controller):
        yield SmtpServer(mailbox, port)
