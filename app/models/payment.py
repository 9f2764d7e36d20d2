"""Charges, payment attempts (one PaymentIntent each), failed confirmations, Stripe events.

PaymentAttempt mirrors its PaymentIntent's status:

    requires_payment_method <-> requires_action -> processing -> requires_capture -> succeeded
    (any open state) -> canceled

A decline or a failed 3-D Secure challenge sends the intent back to
requires_payment_method and the same intent may be confirmed again, so only
succeeded and canceled are final; each failed confirmation is a PaymentFailure
row. Every update re-reads the intent and applies its current status; a final
state never changes back.

Each status has one writer: ``PaymentAttempt.mirror(stripe_status)`` and
``Refund.mirror(stripe_status)`` for the mirrors of Stripe objects (Stripe is
the truth: every status it reports is applied, a repeat or a report after a
final status is ignored), ``Charge.transition(action)`` for our own charge
(a table; a backwards move raises InvalidTransition, a repeat Ignored).
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer,
                        SmallInteger, String, Text, UniqueConstraint, Uuid, func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine, Mirror
from app.models.types import EncryptedText


OPEN_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
                 "requires_capture")
FINAL_STATUSES = ("succeeded", "canceled")
ATTEMPT_STATUSES = OPEN_STATUSES + FINAL_STATUSES + ("creating",)
PURPOSES = ("deposit", "visit", "balance", "no_show_fee")
# A deposit follows the slot: authorized while it is held, released when it is lost, its decline
# answered with a way back to checkout. A visit charge comes after the visit, from a signed note: no
# slot to lose; its collections case (app/services/visit_charges.py) decides what follows a decline.
BOOKING_PURPOSES = ("deposit",)

# A PaymentAttempt mirrors its PaymentIntent: from an open status, whatever Stripe
# now reports is applied (requires_action / processing go back to
# requires_payment_method on a decline; a poll may skip states); succeeded and
# canceled are final (a later report is stale: ignored). ``creating`` is ours:
# the row is stored before Stripe hears of it, and becomes whatever Stripe
# reports for the new intent, or canceled if it is given up before that.
INTENT_MIRROR = Mirror("payment_attempt", remote=OPEN_STATUSES + FINAL_STATUSES, final=FINAL_STATUSES,
                       local={"creating": OPEN_STATUSES + FINAL_STATUSES})

# Our charge: pending until an attempt is authorized, then captured; canceled when the
# authorization is released before capture. Refunds move amounts, not the status.
CHARGE_TRANSITIONS = {
    ("pending", "authorize"): "authorized",
    ("pending", "capture"): "captured",        # authorized and captured between two reads
    ("authorized", "capture"): "captured",
    ("pending", "cancel"): "canceled",
    ("authorized", "cancel"): "canceled",
    ("canceled", "reopen"): "pending",         # a new attempt while the hold is still the patient's
}
CHARGE_MACHINE = Machine("charge", CHARGE_TRANSITIONS)


class Charge(db.Model):
    __tablename__ = "charges"
    __table_args__ = (
        CheckConstraint("purpose IN ('deposit', 'visit', 'balance', 'no_show_fee')", name="purpose"),
        CheckConstraint("amount_cents >= 0", name="amount"),
        CheckConstraint("amount_captured_cents >= 0 AND amount_refunded_cents >= 0 "
                        "AND amount_refunded_cents <= amount_captured_cents", name="money"),
        UniqueConstraint("appointment_id", "purpose", name="uq_charges_appointment_purpose"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    # pending -> authorized -> captured (| canceled); refunds come later
    status: Mapped[str] = mapped_column(String(20), default="pending")
    amount_captured_cents: Mapped[int] = mapped_column(Integer, default=0)
    amount_refunded_cents: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    appointment = relationship("Appointment")
    attempts: Mapped[list["PaymentAttempt"]] = relationship(back_populates="charge",
                                                            order_by="PaymentAttempt.number")

    def transition(self, action: str) -> str:
        """The one writer of ``status`` (CHARGE_TRANSITIONS). Raises InvalidTransition for a move
        the table does not have, Ignored for a repeat; returns the new status."""
        self.status = CHARGE_MACHINE.next(self.status, action)
        return self.status

    def can(self, action: str) -> bool:
        return CHARGE_MACHINE.allows(self.status, action)

    @property
    def follows_booking(self) -> bool:
        """A deposit (its slot decides whether it is captured); not a charge made after the visit."""
        return self.purpose in BOOKING_PURPOSES


class PaymentAttempt(db.Model):
    __tablename__ = "payment_attempts"
    __table_args__ = (
        UniqueConstraint("charge_id", "number", name="uq_payment_attempts_charge_number"),
        # At most one open attempt per charge: a new one only after the previous is canceled.
        Index("uq_payment_attempts_one_open", "charge_id", unique=True,
              postgresql_where=text("status NOT IN ('succeeded', 'canceled')")),
        CheckConstraint("amount_cents > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    client_secret: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default="creating")
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    save_card: Mapped[bool] = mapped_column(Boolean, default=False)
    poll_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    amount_captured_cents: Mapped[int] = mapped_column(Integer, default=0)
    captured_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(32))    # e.g. slot_lost
    # The card that paid, stored when the payment completes: receipts never call Stripe.
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None] = mapped_column(SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    charge: Mapped[Charge] = relationship(back_populates="attempts")
    failures: Mapped[list["PaymentFailure"]] = relationship(back_populates="attempt",
                                                            order_by="PaymentFailure.id")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def mirror(self, stripe_status: str) -> bool:
        """The one writer of ``status`` (INTENT_MIRROR): apply the status Stripe reports for the
        intent. True when applied; False for a repeat, or a stale report after a final status.
        A status Stripe never reports (e.g. ``creating``) raises InvalidTransition."""
        return INTENT_MIRROR.write(self, stripe_status)

    def key(self, operation: str) -> str:
        """The idempotency key of one money-moving call: stored uuid + operation."""
        return f"{self.uuid}:{operation}"


class PaymentFailure(db.Model):
    """One failed confirmation of an attempt (a decline, a failed 3-D Secure)."""
    __tablename__ = "payment_failures"
    __table_args__ = (UniqueConstraint("attempt_id", "dedupe_key", name="uq_payment_failures_attempt_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("payment_attempts.id"), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    attempt: Mapped[PaymentAttempt] = relationship(back_populates="failures")


class StripeEvent(db.Model):
    """A webhook event, stored by Stripe's id before anything else: a duplicate is dropped."""
    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payload: Mapped[dict] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")   # the only ones Stripe takes

# A Refund mirrors Stripe's refund: pending, succeeded, failed or canceled as Stripe
# reports (a succeeded refund can still fail); only failed and canceled are final.
# ``creating`` is ours (stored before Stripe hears of it; failed when Stripe refuses it).
# Stripe's requires_action is stored as pending.
REFUND_STRIPE_STATUSES = ("pending", "succeeded", "failed", "canceled")
REFUND_MIRROR = Mirror("refund", remote=REFUND_STRIPE_STATUSES, final=("failed", "canceled"),
                       local={"creating": REFUND_STRIPE_STATUSES})
REFUND_STATUS_ALIASES = {"requires_action": "pending"}


class Refund(db.Model):
    """Money given back. Stripe gets one of its three reasons; the clinical
    justification and who authorized it live here and in the audit trail."""
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount"),
        CheckConstraint("stripe_reason IN ('duplicate', 'fraudulent', 'requested_by_customer')",
                        name="stripe_reason"),
        CheckConstraint("status IN ('creating', 'pending', 'succeeded', 'failed', 'canceled')", name="status"),
        CheckConstraint("policy IN ('cancellation_policy', 'billing', 'staff_cancel', 'overpayment')",
                        name="policy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)   # idempotency key root
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), index=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("payment_attempts.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    stripe_reason: Mapped[str] = mapped_column(String(32))
    clinical_reason: Mapped[str] = mapped_column(EncryptedText("refunds.clinical_reason"))
    policy: Mapped[str] = mapped_column(String(24))
    authorized_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="creating")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    charge: Mapped[Charge] = relationship()
    attempt: Mapped[PaymentAttempt] = relationship()

    @property
    def is_final(self) -> bool:
        return self.status in REFUND_MIRROR.final

    def mirror(self, stripe_status: str) -> bool:
        """The one writer of ``status`` (REFUND_MIRROR): apply the status Stripe reports for the
        refund. True when applied; False for a repeat, or a stale report after failed/canceled."""
        return REFUND_MIRROR.write(self, REFUND_STATUS_ALIASES.get(stripe_status, stripe_status))
