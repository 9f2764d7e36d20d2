"""Email over SMTP with the standard library.

A timeout before the message is handed over (connect, EHLO, MAIL, RCPT, the
DATA command) is a plain failure: nothing was sent, retry. Once the whole
message and its end-of-data marker are written, the server may have it
whatever happens next, so a timeout or a dropped connection while waiting for
the final reply is ``SendOutcomeUnknown``, never a failure to retry at once.
That last reply gets its own, longer timeout (``data_timeout``: servers often
scan the message before answering; RFC 5321 allows them ten minutes). Every
message carries a Message-ID derived from the notification
(``OutgoingMessage.key``), so each try of one notification is recognisably the
same message. A batch sends over one connection (``SmtpEmail.open()``), each
message with the same guarantees as one sent alone.
"""
from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

from app.integrations.messaging import OutgoingMessage, SendError, SendOutcomeUnknown, SendResult


class _Smtp(smtplib.SMTP):
    """smtplib.SMTP that knows when the message was handed over, and waits ``data_timeout`` for the
    reply to the end of DATA."""

    def __init__(self, *args, data_timeout: float, **kwargs):
        self.data_timeout, self.handed_over = data_timeout, False
        super().__init__(*args, **kwargs)

    def data(self, msg):
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            msg = msg.encode("ascii")
        quoted = re.sub(rb"(?m)^\.", b"..", msg)       # dot-stuffing (RFC 5321 4.5.2)
        if not quoted.endswith(b"\r\n"):
            quoted += b"\r\n"
        if self.sock is not None:
            self.sock.settimeout(self.data_timeout)
        self.send(quoted + b".\r\n")
        self.handed_over = True
        return self.getreply()


class SmtpEmail:
    name = "smtp"

    def __init__(self, *, host: str, port: int, from_addr: str, username: str | None = None,
                 password: str | None = None, starttls: bool = True, timeout: float = 10.0,
                 data_timeout: float = 120.0):
        self.host, self.port, self.from_addr = host, port, from_addr
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout
        self.data_timeout = data_timeout

    @property
    def domain(self) -> str:
        return (parseaddr(self.from_addr)[1] or self.from_addr).rsplit("@", 1)[-1].strip("<> ") or "localhost"

    def message_id(self, message: OutgoingMessage) -> str:
        if message.key:
            return f"<{message.key}@{self.domain}>"
        return make_msgid(domain=self.domain)

    def build(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.from_addr
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        email["Message-ID"] = self.message_id(message)
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        for filename, mimetype, data in message.attachments:
            maintype, subtype = mimetype.split("/", 1)
            email.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return email

    def send(self, message: OutgoingMessage) -> SendResult:
        """One message on its own connection."""
        connection = self.open()
        try:
            return connection.send(message)
        finally:
            connection.close()

    def open(self) -> SmtpConnection:
        """A connection for many messages (a batch): made at the first send, kept between them."""
        return SmtpConnection(self)

    def _connect(self) -> _Smtp:
        smtp = _Smtp(self.host, self.port, timeout=self.timeout, data_timeout=self.data_timeout)
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            _quit(smtp)
            raise
        return smtp


class _Stale(Exception):
    """A kept connection failed before anything was handed over (the server closed it meanwhile)."""


class SmtpConnection:
    """Messages sent one after another over one SMTP connection (RFC 5321 allows many transactions
    per session), so a batch pays for connect, STARTTLS and login once. Each message keeps the
    single-send guarantees: its own hand-over flag, so a failure before the end of DATA is a plain
    ``SendError`` and one after it ``SendOutcomeUnknown``. After any error the connection is
    dropped and the next message opens a new one. A kept connection that turns out closed before
    the message was handed over (idle timeout, 421) is replaced and that message sent on the new
    one: nothing had left. At most MAX_MESSAGES per connection."""

    MAX_MESSAGES = 100

    def __init__(self, email: SmtpEmail):
        self.email, self.smtp, self.count = email, None, 0

    def send(self, message: OutgoingMessage) -> SendResult:
        built = self.email.build(message)
        try:
            return self._send(built)
        except _Stale:
            return self._send(built)

    def _send(self, built: EmailMessage) -> SendResult:
        if self.smtp is not None and self.count >= self.MAX_MESSAGES:
            self.close()
        reused = self.smtp is not None
        smtp = None
        try:
            if self.smtp is None:
                self.smtp, self.count = self.email._connect(), 0
            smtp = self.smtp
            smtp.handed_over = False
            smtp.send_message(built)
        except smtplib.SMTPRecipientsRefused as error:
            self._drop()
            raise SendError("recipient refused", permanent=True) from error
        except smtplib.SMTPResponseException as error:
            # A definite answer, so a definite outcome: not sent. A 5xx to the message itself is final.
            handed_over = smtp is not None and smtp.handed_over
            self._drop()
            if reused and not handed_over and error.smtp_code == 421:
                raise _Stale() from error
            rejected = handed_over and 500 <= error.smtp_code < 600
            raise SendError(f"smtp {error.smtp_code}", permanent=rejected) from error
        except (smtplib.SMTPException, OSError) as error:
            handed_over = smtp is not None and smtp.handed_over
            self._drop()
            if handed_over:
                raise SendOutcomeUnknown("smtp: unconfirmed, no reply after the message was handed over "
                                         f"({error.__class__.__name__})") from error
            if reused and isinstance(error, (smtplib.SMTPServerDisconnected, ConnectionError)):
                raise _Stale() from error
            raise SendError(f"smtp: {error.__class__.__name__}") from error
        self.count += 1
        return SendResult(self.email.name, built["Message-ID"], "sent")

    def _drop(self) -> None:
        """After an error the session's state is unknown: close it (without waiting on a QUIT)."""
        if self.smtp is not None:
            try:
                self.smtp.close()
            finally:
                self.smtp = None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                _quit(self.smtp)
            finally:
                self.smtp = None


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye if we still can; the outcome is already known, so nothing here may change it."""
    try:
        if smtp.sock is not None:
            smtp.sock.settimeout(min(smtp.timeout, 5.0))
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()
