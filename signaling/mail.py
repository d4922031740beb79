"""Mail, when the operator configures an SMTP server (``PULSEROOM_SMTP_URL``): invitations
and password links go to the person's address as well as to the admin's screen, and
someone who forgot their password can ask for a reset link themselves.

Without it nothing is mailed and nothing needs a mail server: the admin (or
``pulseroom user reset EMAIL``) hands the one-time link over. Sending uses the standard
library's SMTP client in a thread (a message a minute at most, so no async SMTP library
is worth its dependency): ``smtp://`` upgrades with STARTTLS when the server offers it
(and insists on it with ``?starttls=required``), ``smtps://`` is TLS from the start;
credentials ride in the URL.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 15.0


class MailError(Exception):
    """The message could not be handed to the SMTP server (the reason, without secrets)."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to hand mail over, parsed from ``PULSEROOM_SMTP_URL``."""

    host: str
    port: int
    tls: bool  # smtps://: TLS from the first byte
    starttls_required: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """``smtp://[user:password@]host[:port][?starttls=required]`` or ``smtps://…``;
        raises ValueError naming what is wrong (never echoing the password)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must look like smtp://user:password@host:587 or smtps://host:465")
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["auto"])[-1]
        if starttls not in ("auto", "required"):
            raise ValueError("starttls may only be 'required' (the default upgrades if offered)")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 587),
            tls=tls,
            starttls_required=starttls == "required",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Mailer:
    """Sends PulseRoom's few messages through one SMTP server."""

    def __init__(self, url: str, sender: str, *, name: str = "PulseRoom") -> None:
        self.server = SmtpServer.parse(url)
        self.sender = formataddr((name, sender))

    @classmethod
    def of(cls, url: str | None, sender: str) -> Mailer | None:
        """A mailer when an SMTP server is configured, else None (nothing is mailed)."""
        return None if url is None else cls(url, sender)

    def message(self, to: str, subject: str, body: str) -> EmailMessage:
        """A plain-text message from PulseRoom to ``to``."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.sender.rsplit("@", 1)[-1].rstrip(">"))
        message.set_content(body)
        return message

    async def send(self, to: str, subject: str, body: str) -> None:
        """Hand one message to the SMTP server; raises MailError if it was not taken."""
        message = self.message(to, subject, body)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            # The server's own words, which never hold our password.
            reason = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("mail to %s not sent: %s", to, reason)
            raise MailError(reason) from None
        logger.info("mailed %r to %s", subject, to)

    def _deliver(self, message: EmailMessage) -> None:
        server = self.server
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if server.tls:
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=SMTP_TIMEOUT_S, context=context
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT_S)
        with smtp:
            smtp.ehlo()
            if not server.tls:
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif server.starttls_required:
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if server.username is not None:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message)


def link_message(purpose: str, link: str, hours: int) -> tuple[str, str]:
    """Subject and body of a mail carrying a one-time password link."""
    if purpose == "invite":
        subject = "You are invited to PulseRoom"
        lead = "You have been invited to PulseRoom. Choose your password here:"
    else:
        subject = "Reset your PulseRoom password"
        lead = "Someone (hopefully you) asked to reset your PulseRoom password. Set a new one here:"
    body = (
        f"{lead}\n\n{link}\n\n"
        f"The link works once, for {hours} hours. If you did not expect this mail, "
        "ignore it: nothing changes until the link is used.\n"
    )
    return subject, body


async def mail_link(
    mailer: Mailer | None, email: str, purpose: str, link: str, hours: int
) -> dict[str, object]:
    """Mail a one-time password link if mail is configured: what an answer says of it
    (``emailed``, and ``mail_error`` when the server did not take it)."""
    if mailer is None:
        return {"emailed": False}
    subject, body = link_message(purpose, link, hours)
    try:
        await mailer.send(email, subject, body)
    except MailError as exc:
        return {"emailed": False, "mail_error": str(exc)}
    return {"emailed": True}
