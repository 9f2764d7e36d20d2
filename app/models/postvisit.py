"""Post-visit payment: the card set up at booking, the consent to charge it later, and the
collections case that follows a visit charge from the signed note to paid or written off.

CardSetup mirrors a SetupIntent (like PaymentAttempt mirrors a PaymentIntent):

    creating -> requires_payment_method <-> requires_action -> processing -> succeeded
    (any open state) -> canceled

PaymentConsent is evidence (card networks ask for it, and it answers a dispute): the exact
wording the patient accepted, when, and for which card. Append-only (trigger, migration 0011).

CollectionCase (one per visit charge) is ours:

    pending -> charging -> paid
    charging -> recovering            (declined, authentication required, no card: the patient's link;
                                       scheduled off-session retries after soft declines only)
    recovering -> charging            (an automatic retry re-confirms the same PaymentIntent)
    recovering -> paid                (the patient paid from the link or the dashboard)
    recovering -> collections         (retries exhausted / the last retry time passed unpaid)
    collections -> with_agency | payment_plan | written_off | paid
    with_agency -> paid | written_off
    payment_plan -> paid              (every instalment paid)
    payment_plan -> collections       (an instalment failed)
    recovering -> written_off
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, SmallInteger, String,
                        Text, Uuid, func, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine, Mirror
from app.models.types import EncryptedText

SETUP_OPEN = ("requires_payment_method", "requires_confirmation", "requires_action", "processing")
SETUP_FINAL = ("succeeded", "canceled")
SETUP_MIRROR = Mirror("card_setup", remote=SETUP_OPEN + SETUP_FINAL, final=SETUP_FINAL,
                      local={"creating": SETUP_OPEN + SETUP_FINAL})


class CardSetup(db.Model):
    """One SetupIntent that saves (and verifies) a card for a post-visit appointment."""
    __tablename__ = "card_setups"
    __table_args__ = (
        Index("uq_card_setups_one_open", "appointment_id", unique=True,
              postgresql_where=text("status NOT IN ('succeeded', 'canceled')")),
        CheckConstraint("status IN ('creating', 'requires_payment_method', 'requires_confirmation', "
                        "'requires_action', 'processing', 'succeeded', 'canceled')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)   # idempotency key root
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    stripe_setup_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    client_secret: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default="creating")
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None] = mapped_column(SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(SmallInteger)
    # The consent the patient gave when submitting the card (the PaymentConsent row is written,
    # with the card, once the setup succeeds): which wording, when, by whom.
    consent_version: Mapped[str | None] = mapped_column(String(32))
    consent_accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consent_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    appointment = relationship("Appointment")

    @property
    def is_final(self) -> bool:
        return self.status in SETUP_FINAL

    def mirror(self, stripe_status: str) -> bool:
        """The one writer of ``status`` (SETUP_MIRROR)."""
        return SETUP_MIRROR.write(self, stripe_status)

    def key(self, operation: str) -> str:
        return f"{self.uuid}:{operation}"


CONSENT_KINDS = ("post_visit_charge", "payment_plan", "hybrid_balance")


class PaymentConsent(db.Model):
    """The patient's consent to a later off-session charge: wording, time, card. Never changed."""
    __tablename__ = "payment_consents"
    __table_args__ = (
        CheckConstraint("kind IN ('post_visit_charge', 'payment_plan', 'hybrid_balance')", name="kind"),
        # A hybrid deposit's consent to the later balance charge is written once per visit (a card
        # saved later by a SetupIntent writes its own, naming the setup).
        Index("uq_payment_consents_hybrid_deposit", "appointment_id", unique=True,
              postgresql_where=text("kind = 'hybrid_balance' AND card_setup_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    wording: Mapped[str] = mapped_column(Text)                  # exactly what the page showed
    wording_version: Mapped[str] = mapped_column(String(32))
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_setup_id: Mapped[int | None] = mapped_column(ForeignKey("card_setups.id"))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


CASE_TRANSITIONS = {
    ("pending", "charge"): "charging",
    ("charging", "succeed"): "paid",
    ("charging", "fail"): "recovering",
    ("recovering", "retry"): "charging",
    ("recovering", "succeed"): "paid",
    ("recovering", "escalate"): "collections",
    ("recovering", "write_off"): "written_off",
    ("collections", "succeed"): "paid",
    ("collections", "send_to_agency"): "with_agency",
    ("collections", "plan"): "payment_plan",
    ("collections", "write_off"): "written_off",
    ("with_agency", "succeed"): "paid",
    ("with_agency", "write_off"): "written_off",
    ("payment_plan", "succeed"): "paid",
    ("payment_plan", "default"): "collections",
}
CASE_MACHINE = Machine("collection_case", CASE_TRANSITIONS)
CASE_STATUSES = ("pending", "charging", "paid", "recovering", "collections", "with_agency", "payment_plan",
                 "written_off")
CASE_OPEN = ("pending", "charging", "recovering", "collections", "with_agency", "payment_plan")
FAILURE_KINDS = ("soft", "hard", "authentication", "no_card")


class CollectionCase(db.Model):
    """A visit charge from its signed note to paid, in collections, or written off."""
    __tablename__ = "collection_cases"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'charging', 'paid', 'recovering', 'collections', 'with_agency', "
                        "'payment_plan', 'written_off')", name="status"),
        CheckConstraint("failure_kind IS NULL OR failure_kind IN ('soft', 'hard', 'authentication', 'no_card')",
                        name="failure_kind"),
        CheckConstraint("status <> 'written_off' OR (written_off_reason IS NOT NULL AND written_off_by_id IS NOT NULL)",
                        name="write_off_justified"),
        CheckConstraint("retries_done >= 0", name="retries"),
        CheckConstraint("plan_instalments IS NULL OR plan_instalments BETWEEN 2 AND 24", name="plan"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), unique=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    failure_code: Mapped[str | None] = mapped_column(String(64))       # Stripe's code / decline_code / advice
    retries_done: Mapped[int] = mapped_column(Integer, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    escalate_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    link_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    final_notice_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    agency_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    written_off_reason: Mapped[str | None] = mapped_column(EncryptedText("collection_cases.written_off_reason"))
    written_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    plan_instalments: Mapped[int | None] = mapped_column(SmallInteger)
    plan_instalment_cents: Mapped[int | None] = mapped_column(Integer)
    plan_paid: Mapped[int] = mapped_column(SmallInteger, default=0)
    plan_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)   # paid after a failure
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    charge = relationship("Charge")
    encounter = relationship("Encounter")
    appointment = relationship("Appointment")

    @property
    def is_open(self) -> bool:
        return self.status in CASE_OPEN

    def transition(self, action: str) -> str:
        """The one writer of ``status`` (CASE_TRANSITIONS): InvalidTransition / Ignored as every machine."""
        self.status = CASE_MACHINE.next(self.status, action)
        return self.status

    def can(self, action: str) -> bool:
        return CASE_MACHINE.allows(self.status, action)
