"""One sender interface, three implementations: Twilio SMS, SMTP email, and the
dev outbox (used whenever Twilio or SMTP settings are absent).

A sender gets a rendered ``OutgoingMessage`` and returns a ``SendResult`` or
raises ``SendError`` (``permanent`` when retrying cannot help, e.g. an
invalid number), or ``SendOutcomeUnknown`` when the message was handed over
but no answer came (not retried: it may have gone). Senders never log
message bodies: only ids. A sender that keeps a connection (SMTP) also has
``open()``: a connection whose ``send`` takes many messages one after another
(a batch), and ``close()``; ``Connections`` gives each channel of a batch one.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("app.messages")


@dataclass(frozen=True)
class OutgoingMessage:
    channel: str                    # sms | email
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    attachments: tuple = field(default_factory=tuple)   # (filename, mimetype, bytes)
    reference: str | None = None    # our notification id, for logs and callbacks
    key: str | None = None          # stable across retries of one message (the email's Message-ID)


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str | None
    status: str = "sent"


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class SendOutcomeUnknown(SendError):
    """The message was handed over, but no answer came (e.g. a timeout after the end of SMTP DATA):
    it may well have gone. Retrying at once risks sending it twice, so the caller records it as
    handed over, unconfirmed, instead of retrying."""


class Sender(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...


class Connections:
    """The ``send`` of each sender a batch uses: its kept connection (``open()``) where it has one,
    its own ``send`` otherwise; ``close()`` closes what was opened."""

    def __init__(self):
        self._open: dict[int, tuple[object, object]] = {}

    def send(self, sender: Sender, message: OutgoingMessage) -> SendResult:
        opener = getattr(sender, "open", None)
        if opener is None:
            return sender.send(message)
        key = id(sender)
        if key not in self._open:
            self._open[key] = (sender, opener())
        return self._open[key][1].send(message)

    def close(self) -> None:
        opened, self._open = self._open, {}
        for _, connection in opened.values():
            try:
                connection.close()
            except Exception:            # the outcomes are known; closing must not change them
                log.warning("could not close a %s connection", type(connection).__name__)

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OutboxSender:
    """Development: nothing leaves the machine. The notification row (with its
    body) is the outbox; the dev page lists it with clickable links."""

    name = "outbox"

    def send(self, message: OutgoingMessage) -> SendResult:
        message_id = f"outbox-{uuid.uuid4().hex[:16]}"
        log.info("outbox: %s message %s for notification %s", message.channel, message_id, message.reference)
        return SendResult(self.name, message_id, "delivered")
