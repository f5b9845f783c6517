"""The notification outbox's channels (domain.notifications.Channels): e-mail over SMTP and JSON
webhooks, both through actors/outbound.py. Their failures speak the outcome vocabulary: a 4xx
SMTP reply, a refused connection, a timeout, a webhook's 429/5xx are RetryLater; a 5xx SMTP reply
(bad address, authentication refused), a webhook's other answers are PermanentFailure.

Error messages name the server (host:port), never the URL: the SMTP URL holds a password, and a
webhook URL's path is often its secret (Slack's are).
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from actors.outbound import Outbound, smtp
from domain.notifications import Email
from domain.outcomes import PermanentFailure, RetryLater
from storage.settings import SmtpSettings


class Channels:
    def __init__(self, config: SmtpSettings, *, outbound: Outbound | None = None):
        self.config = config
        self.outbound = outbound
        self.secrets = tuple(s for s in (config.password,) if s)

    # ---- e-mail ------------------------------------------------------------------------------

    def message(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.config.from_address
        message["To"] = ", ".join(email.to)
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.config.from_address.rsplit("@", 1)[-1].rstrip(">"))
        message["X-Lamplighter-Notification"] = email.reference
        message.set_content(email.text)
        if email.html:
            message.add_alternative(email.html, subtype="html")
        return message

    def send_email(self, email: Email) -> str | None:
        config = self.config
        if not config.configured:
            raise PermanentFailure("e-mail is not configured: set LAMPLIGHTER_SMTP_URL and LAMPLIGHTER_SMTP_FROM, "
                                   "then `lamplighter notifications retry ID`")
        server = f"SMTP {config.host}:{config.port}"
        try:
            with smtp(config.host, config.port, implicit_tls=config.implicit_tls) as connection:
                if config.starttls:
                    connection.starttls(context=ssl.create_default_context())
                if config.username:
                    connection.login(config.username, config.password)
                refused = connection.send_message(self.message(email))
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(f"{server}: {_first_line(exc)} (STARTTLS is required unless the URL says "
                                   "?starttls=0)") from None
        except smtplib.SMTPRecipientsRefused as exc:
            replies = sorted({code for code, _ in exc.recipients.values()})
            detail = "; ".join(f"{address}: {code} {_text(reply)}" for address, (code, reply) in exc.recipients.items())
            outcome = RetryLater if any(400 <= code < 500 for code in replies) else PermanentFailure
            raise outcome(f"{server}: recipients refused: {detail}") from None
        except smtplib.SMTPResponseException as exc:
            reply = f"{server}: {exc.smtp_code} {_text(exc.smtp_error)}"
            raise (RetryLater(reply) if 400 <= exc.smtp_code < 500 else PermanentFailure(reply)) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, reset, timed out, TLS, disconnected
            raise RetryLater(f"{server}: {type(exc).__name__}: {_first_line(exc)}") from None
        if refused:
            # Some recipients took it; sending again would repeat it to them. Delivered, with a note.
            return "refused by the server for " + "; ".join(f"{a}: {code} {_text(reply)}"
                                                           for a, (code, reply) in refused.items())
        return None

    # ---- webhooks ----------------------------------------------------------------------------

    def post_webhook(self, url: str, payload: dict) -> None:
        try:
            # Outbound's defaults are a webhook's: no redirect followed, only 2xx counts, the SSRF
            # guard in front of the user-supplied URL.
            (self.outbound or Outbound()).request("POST", url, json=payload)
        except (RetryLater, PermanentFailure) as exc:
            # Outbound names the host only; keep it that way, and add what the call was.
            raise type(exc)(f"webhook {exc}", **({"delay": exc.delay} if isinstance(exc, RetryLater) else {})) \
                from None


def _text(reply) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).strip().splitlines()[0][:300]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
