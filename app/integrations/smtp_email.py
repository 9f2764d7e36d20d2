"""Email over SMTP with the standard library."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from app.integrations.messaging import OutgoingMessage, SendError, SendResult


class SmtpEmail:
    name = "smtp"

    def __init__(self, *, host: str, port: int, from_addr: str, username: str | None = None,
                 password: str | None = None, starttls: bool = True, timeout: float = 10.0):
        self.host, self.port, self.from_addr = host, port, from_addr
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout

    def build(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.from_addr
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        email["Message-ID"] = make_msgid(domain=self.from_addr.split("@")[-1].strip(">"))
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        for filename, mimetype, data in message.attachments:
            maintype, subtype = mimetype.split("/", 1)
            email.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return email

    def send(self, message: OutgoingMessage) -> SendResult:
        email = self.build(message)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as error:
            raise SendError("recipient refused", permanent=True) from error
        except (smtplib.SMTPException, OSError) as error:
            raise SendError(f"smtp: {error.__class__.__name__}") from error
        return SendResult(self.name, email["Message-ID"], "sent")
