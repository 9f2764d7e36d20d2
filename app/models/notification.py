"""Messages to patients and providers, one-use links, phone verification.

Notification rows are the truth: RQ only carries them. A send claims the row
with a compare-and-swap on ``sent_at`` (so a second run is a no-op). The claim
is a lease: ``sent_at`` is when it began and ``attempts`` numbers it, and the
sweeper takes back a row still ``sending`` after SEND_LEASE (its process died)
with the ``expire`` edge. The sweeper also re-enqueues anything due and unsent,
so a Redis restart loses nothing.

``status`` has one writer, the table below: ``Notification.transition(action)``
on a loaded row, and ``Notification.transition_where(action, ...)`` for a
compare-and-swap UPDATE whose ``WHERE status IN (...)`` is the action's source
states in the same table.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, Update, Uuid,
                        func, update)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.extensions import db
from app.models.state import Machine
from app.models.types import EncryptedText

NOTIFICATION_STATUSES = ("queued", "sending", "sent", "delivered", "failed", "canceled")
TRANSITIONS = {
    ("queued", "claim"): "sending",          # the CAS: one run sends the row
    ("sending", "hand_off"): "sent",         # the sender took it (Twilio, SMTP)
    ("sending", "deliver"): "delivered",     # the sender delivered it at once (the outbox)
    ("sent", "deliver"): "delivered",        # Twilio's status callback
    ("sending", "retry"): "queued",          # a failed send releases the claim for the next try
    ("sending", "expire"): "queued",         # the sweep takes back a claim whose lease ran out (a dead process)
    ("sending", "fail"): "failed",           # a permanent error, or out of tries
    ("sent", "fail"): "failed",              # Twilio's callback: failed / undelivered
    ("queued", "cancel"): "canceled",        # nothing left to say (a canceled booking, a moot message)
    ("canceled", "requeue"): "queued",       # a reschedule brings back an unsent reminder
}
MACHINE = Machine("notification", TRANSITIONS)


class Notification(db.Model):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email')", name="channel"),
        CheckConstraint("status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'canceled')",
                        name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # One row per purpose: a second booking_confirmed for the same appointment finds it.
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(EncryptedText("notifications.recipient"))   # a number or an email
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    context: Mapped[dict] = mapped_column(db.JSON, default=dict)   # opaque ids only (e.g. a link token id)
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    provider: Mapped[str | None] = mapped_column(String(16))            # twilio | smtp | outbox
    provider_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(EncryptedText("notifications.body"))  # as sent, for the log and outbox
    error: Mapped[str | None] = mapped_column(EncryptedText("notifications.error"))  # a provider's may name the number
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    appointment = relationship("Appointment")
    user = relationship("User")

    def transition(self, action: str) -> str:
        """The one writer of a loaded row's ``status`` (TRANSITIONS). Raises InvalidTransition for a
        move the table does not have, Ignored for a repeat; returns the new status."""
        self.status = MACHINE.next(self.status, action)
        return self.status

    def can(self, action: str) -> bool:
        return MACHINE.allows(self.status, action)

    @classmethod
    def transition_where(cls, action: str, *criteria) -> Update:
        """The compare-and-swap form of ``transition``: ``UPDATE notifications SET status=<target>
        WHERE status IN (<the action's source states>) AND <criteria>``. Add ``.values(...)`` for
        other columns and ``.returning(...)`` to see which rows moved."""
        sources, target = MACHINE.cas(action)
        return update(cls).where(cls.status.in_(sources), *criteria).values(status=target)


class LinkToken(db.Model):
    """A signed, expiring, single-use link: a retry of checkout, a password reset, or a waitlist offer."""
    __tablename__ = "link_tokens"
    __table_args__ = (CheckConstraint("purpose IN ('retry_checkout', 'password_reset', 'waitlist_offer')",
                                      name="purpose"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    purpose: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    appointment = relationship("Appointment")
    user = relationship("User")


class PhoneVerification(db.Model):
    """A pending SMS code for a user's phone number (the code itself is stored hashed)."""
    __tablename__ = "phone_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    phone: Mapped[str] = mapped_column(EncryptedText("phone_verifications.phone"))
    phone_hash: Mapped[str | None] = mapped_column(String(64))     # the code is for this number (look-up)
    code_hash: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    @validates("phone")
    def _hash_phone(self, _key, value):
        from app.services import field_crypto

        self.phone_hash = field_crypto.phone_hash(value)
        return value


class SmsOptOut(db.Model):
    """STOP received from a number: no SMS goes to it (email instead) until START. Keyed by the
    number's look-up hash (``field_crypto.phone_hash``): the number itself is not stored."""
    __tablename__ = "sms_opt_outs"

    phone_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())
