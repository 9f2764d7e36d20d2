"""Intake, insurance coverage, eligibility checks and estimates (issue 15).

Intake is the patient's own account of themselves before a visit: demographics, the reason for the
visit, the appointment type's questionnaire (all PHI, stored as one encrypted JSON document,
``intakes.data``), consents signed by typing the name (append-only rows), and insurance (``coverages``,
primary and secondary, encrypted field by field; card photos encrypted too).

    Intake:   draft -> submitted        (a submitted intake is edited by starting a new one from it)

An EligibilityCheck is one 270/271 exchange, stored with its raw answer. An Estimate is the patient's
expected share for an appointment type's expected codes: for an insured patient from the fee schedule,
the payer's allowed amounts and the 271's benefits; for an uninsured or self-pay patient it is the
Good Faith Estimate (45 CFR 149.610) of the expected charges, kept with the appointment.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, Numeric, SmallInteger,
                        String, UniqueConstraint, Uuid, func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine
from app.models.types import EncryptedText

INTAKE_TRANSITIONS = {("draft", "submit"): "submitted"}
INTAKE_MACHINE = Machine("intake", INTAKE_TRANSITIONS)
CONSENT_KINDS = ("treatment", "privacy", "financial", "telehealth")
RELATIONSHIPS = ("self", "spouse", "child", "other")
RANKS = ("primary", "secondary")
SEXES = ("female", "male", "other", "unknown")
DEPOSIT_RULES = ("estimate", "copay", "percent", "fixed")


class Payer(db.Model):
    """The clinic's payer list (ids as the clearinghouse knows them) and, per code, the allowed
    amounts the clinic has contracted (``payer_allowed_amounts``)."""
    __tablename__ = "payers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # For a code without a contracted amount, the estimate assumes this share of billed (None: billed).
    default_allowed_percent: Mapped[int | None] = mapped_column(SmallInteger)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PayerAllowedAmount(db.Model):
    __tablename__ = "payer_allowed_amounts"
    __table_args__ = (
        UniqueConstraint("payer_id", "billing_code_id", "modifier", name="uq_payer_allowed_amounts_code"),
        CheckConstraint("allowed_cents >= 0", name="allowed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payer_id: Mapped[str] = mapped_column(ForeignKey("payers.id"), index=True)
    billing_code_id: Mapped[int] = mapped_column(ForeignKey("billing_codes.id"))
    modifier: Mapped[str] = mapped_column(String(2), default="", server_default="")
    allowed_cents: Mapped[int] = mapped_column(Integer)


class Intake(db.Model):
    __tablename__ = "intakes"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'submitted')", name="status"),
        # One draft per patient and appointment type (save and come back resumes it).
        Index("uq_intakes_one_draft", "patient_id", "appointment_type_id", unique=True,
              postgresql_where=text("status = 'draft' AND appointment_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    appointment_type_id: Mapped[int] = mapped_column(ForeignKey("appointment_types.id"))
    # Set when the intake belongs to a booking (at the hold for hybrid types, from the link otherwise).
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="draft")
    # The whole answer as JSON, encrypted: {"demographics": {legal_name, date_of_birth, sex, address_line1,
    # address_line2, city, state, postal_code}, "reason": str, "answers": {key: value}, "self_pay": bool}
    data: Mapped[str] = mapped_column(EncryptedText("intakes.data"), default="{}")
    version: Mapped[int] = mapped_column(Integer, default=1)         # compare-and-swap across tabs
    step: Mapped[str | None] = mapped_column(String(24))             # where the patient left off
    # The patient's previous submitted intake: what "changed since last time" compares with.
    previous_intake_id: Mapped[int | None] = mapped_column(ForeignKey("intakes.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    def transition(self, action: str) -> str:
        self.status = INTAKE_MACHINE.next(self.status, action)
        return self.status

    def __repr__(self) -> str:
        return f"<Intake {self.id} {self.status}>"


class IntakeConsent(db.Model):
    """A consent signed by typing the name. Append-only (trigger, migration 0012)."""
    __tablename__ = "intake_consents"
    __table_args__ = (
        CheckConstraint("kind IN ('treatment', 'privacy', 'financial', 'telehealth')", name="kind"),
        UniqueConstraint("intake_id", "kind", name="uq_intake_consents_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    intake_id: Mapped[int] = mapped_column(ForeignKey("intakes.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    wording_version: Mapped[str] = mapped_column(String(32))
    typed_name: Mapped[str] = mapped_column(EncryptedText("intake_consents.typed_name"))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class Coverage(db.Model):
    """A patient's insurance, as entered at intake. A change is a new row; the old one is 'replaced'."""
    __tablename__ = "coverages"
    __table_args__ = (
        CheckConstraint("rank IN ('primary', 'secondary')", name="rank"),
        CheckConstraint("subscriber_relationship IN ('self', 'spouse', 'child', 'other')", name="relationship"),
        CheckConstraint("status IN ('active', 'replaced')", name="status"),
        Index("uq_coverages_one_active", "patient_id", "rank", unique=True,
              postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    intake_id: Mapped[int | None] = mapped_column(ForeignKey("intakes.id"), index=True)
    rank: Mapped[str] = mapped_column(String(10))
    payer_id: Mapped[str] = mapped_column(ForeignKey("payers.id"))
    member_id: Mapped[str] = mapped_column(EncryptedText("coverages.member_id"))
    group_number: Mapped[str | None] = mapped_column(EncryptedText("coverages.group_number"))
    plan_name: Mapped[str | None] = mapped_column(EncryptedText("coverages.plan_name"))
    subscriber_name: Mapped[str] = mapped_column(EncryptedText("coverages.subscriber_name"))
    subscriber_birth_date: Mapped[str] = mapped_column(EncryptedText("coverages.subscriber_birth_date"))
    subscriber_relationship: Mapped[str] = mapped_column(String(8), default="self")   # the patient to the subscriber
    # Optional card photos: base64 of the image bytes, encrypted; served only through an audited,
    # no-store route, never in a page or its cache.
    card_front: Mapped[str | None] = mapped_column(EncryptedText("coverages.card_front"))
    card_front_type: Mapped[str | None] = mapped_column(String(32))
    card_back: Mapped[str | None] = mapped_column(EncryptedText("coverages.card_back"))
    card_back_type: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(10), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    payer: Mapped[Payer] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<Coverage {self.id} {self.rank} {self.status}>"


class EligibilityCheck(db.Model):
    """One 270/271: when, why, what it said (the raw answer kept, encrypted)."""
    __tablename__ = "eligibility_checks"
    __table_args__ = (
        CheckConstraint("trigger IN ('entry', 'day_before', 'manual')", name="trigger"),
        CheckConstraint("status IN ('active', 'inactive', 'error', 'unavailable')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coverage_id: Mapped[int] = mapped_column(ForeignKey("coverages.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12))
    service_date: Mapped[str | None] = mapped_column(String(10))     # ISO date asked about
    clearinghouse_id: Mapped[str | None] = mapped_column(String(64))
    plan_name: Mapped[str | None] = mapped_column(EncryptedText("eligibility_checks.plan_name"))
    copay_cents: Mapped[int | None] = mapped_column(Integer)
    coinsurance_percent: Mapped[float | None] = mapped_column(Numeric(5, 2))
    deductible_cents: Mapped[int | None] = mapped_column(Integer)
    deductible_met_cents: Mapped[int | None] = mapped_column(Integer)
    oop_max_cents: Mapped[int | None] = mapped_column(Integer)
    oop_met_cents: Mapped[int | None] = mapped_column(Integer)
    errors: Mapped[list] = mapped_column(JSONB, default=list)         # AAA codes and plain descriptions
    response: Mapped[str | None] = mapped_column(EncryptedText("eligibility_checks.response"))   # raw JSON
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    coverage: Mapped[Coverage] = relationship()


class Estimate(db.Model):
    """The patient's expected share for a visit (kind insured), or the Good Faith Estimate of expected
    charges for an uninsured or self-pay patient (kind self_pay, good_faith true). Never edited: a new
    estimate is a new row; the appointment keeps the one shown when it was booked."""
    __tablename__ = "estimates"
    __table_args__ = (
        CheckConstraint("kind IN ('insured', 'self_pay')", name="kind"),
        CheckConstraint("deposit_rule IN ('estimate', 'copay', 'percent', 'fixed')", name="deposit_rule"),
        CheckConstraint("patient_cents >= 0 AND deposit_cents >= 0 AND billed_cents >= 0", name="money"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    appointment_type_id: Mapped[int] = mapped_column(ForeignKey("appointment_types.id"))
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    intake_id: Mapped[int | None] = mapped_column(ForeignKey("intakes.id"), index=True)
    coverage_id: Mapped[int | None] = mapped_column(ForeignKey("coverages.id"))
    secondary_coverage_id: Mapped[int | None] = mapped_column(ForeignKey("coverages.id"))
    eligibility_check_id: Mapped[int | None] = mapped_column(ForeignKey("eligibility_checks.id"))
    kind: Mapped[str] = mapped_column(String(10))
    # Per expected code: {system, code, modifier, units, billed_cents, allowed_cents}
    lines: Mapped[list] = mapped_column(JSONB, default=list)
    billed_cents: Mapped[int] = mapped_column(Integer, default=0)
    allowed_cents: Mapped[int] = mapped_column(Integer, default=0)
    copay_cents: Mapped[int] = mapped_column(Integer, default=0)
    deductible_cents: Mapped[int] = mapped_column(Integer, default=0)      # applied to this visit
    coinsurance_cents: Mapped[int] = mapped_column(Integer, default=0)
    oop_reduction_cents: Mapped[int] = mapped_column(Integer, default=0)   # cut by the out-of-pocket max
    secondary_cents: Mapped[int] = mapped_column(Integer, default=0)       # expected from a secondary plan
    patient_cents: Mapped[int] = mapped_column(Integer, default=0)
    insurer_cents: Mapped[int] = mapped_column(Integer, default=0)
    deposit_rule: Mapped[str] = mapped_column(String(10), default="estimate")
    deposit_cents: Mapped[int] = mapped_column(Integer, default=0)
    # Good Faith Estimate: when it is due (45 CFR 149.610(b)(1)(vi)) and when it was given.
    good_faith: Mapped[bool] = mapped_column(Boolean, default=False)
    gfe_due_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    gfe_delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def __repr__(self) -> str:
        return f"<Estimate {self.id} {self.kind}>"
