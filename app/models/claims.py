"""Claims, remittances and reconciliation: the hybrid timing after the visit (issue 15).

A Claim is made from a signed encounter of a hybrid visit (lines, diagnoses, coverage) and sent to the
clearinghouse (837P) by billing or automatically (CLAIM_AUTO_SUBMIT):

    draft -> submitted -> adjudicated -> reconciled
    submitted -> denied -> reconciled           (every line denied)
    draft -> reconciled                         (nothing to send: e.g. billing decided to bill the patient)

A Remittance is the payer's answer (835 content), from the clearinghouse or entered by billing from a
paper EOB; one per claim (``claim_id`` unique): a duplicate or late second answer is recorded in the
audit trail and never applied. What the patient owes is the sum of the PR adjustments; CO amounts are
written off and never billed. With a secondary coverage, the primary's PR balance goes to a secondary
claim before the patient is charged.

A Reconciliation (one per appointment) is the end: the patient's responsibility minus what they paid
(the deposit, net of refunds) -> a balance charge (purpose 'balance', with the post-visit collections
case), a partial refund of the deposit (policy 'overpayment'), or nothing.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String,
                        UniqueConstraint, Uuid, func)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine
from app.models.types import EncryptedText

CLAIM_TRANSITIONS = {
    ("draft", "submit"): "submitted",
    ("submitted", "adjudicate"): "adjudicated",
    ("submitted", "deny"): "denied",
    ("draft", "adjudicate"): "adjudicated",     # a paper EOB entered before we recorded a submission
    ("draft", "deny"): "denied",
    ("adjudicated", "reconcile"): "reconciled",
    ("denied", "reconcile"): "reconciled",
    ("draft", "reconcile"): "reconciled",
}
CLAIM_MACHINE = Machine("claim", CLAIM_TRANSITIONS)
CLAIM_STATUSES = ("draft", "submitted", "adjudicated", "denied", "reconciled")
OUTCOMES = ("balance_charge", "refund", "none")


class Claim(db.Model):
    __tablename__ = "claims"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'submitted', 'adjudicated', 'denied', 'reconciled')", name="status"),
        CheckConstraint("rank IN ('primary', 'secondary')", name="rank"),
        UniqueConstraint("encounter_id", "rank", name="uq_claims_encounter_rank"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The id the clearinghouse knows the claim by (opaque; the submission's idempotency key).
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    coverage_id: Mapped[int] = mapped_column(ForeignKey("coverages.id"))
    rank: Mapped[str] = mapped_column(String(10), default="primary")
    # A secondary claim names the primary claim whose patient balance it carries.
    primary_claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"))
    status: Mapped[str] = mapped_column(String(12), default="draft")
    billed_cents: Mapped[int] = mapped_column(Integer)
    # Snapshot of the lines sent: {line_number, code_system, code, modifiers, units, billed_cents, pointers}
    lines: Mapped[list] = mapped_column(JSONB, default=list)
    payer_claim_number: Mapped[str | None] = mapped_column(String(64))
    # The rendering provider's NPI (else the clinic's), fixed when the claim opens: a resend is the same claim.
    provider_npi: Mapped[str | None] = mapped_column(String(10))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    last_error: Mapped[str | None] = mapped_column(String(255))        # why the last submission failed
    adjudicated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    coverage = relationship("Coverage")

    def transition(self, action: str) -> str:
        """The one writer of ``status`` (CLAIM_TRANSITIONS)."""
        self.status = CLAIM_MACHINE.next(self.status, action)
        return self.status

    def can(self, action: str) -> bool:
        return CLAIM_MACHINE.allows(self.status, action)

    def __repr__(self) -> str:
        return f"<Claim {self.id} {self.rank} {self.status}>"


class Remittance(db.Model):
    """The payer's answer to one claim (835 content or a paper EOB), applied once."""
    __tablename__ = "remittances"
    __table_args__ = (
        CheckConstraint("source IN ('clearinghouse', 'manual')", name="source"),
        CheckConstraint("status IN ('processed', 'denied')", name="status"),
        CheckConstraint("billed_cents >= 0 AND paid_cents >= 0 AND patient_responsibility_cents >= 0 "
                        "AND written_off_cents >= 0", name="money"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), unique=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)   # the clearinghouse's id, or manual:<uuid>
    source: Mapped[str] = mapped_column(String(14))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    payer_claim_number: Mapped[str | None] = mapped_column(String(64))
    billed_cents: Mapped[int] = mapped_column(Integer)
    allowed_cents: Mapped[int] = mapped_column(Integer)
    paid_cents: Mapped[int] = mapped_column(Integer)
    patient_responsibility_cents: Mapped[int] = mapped_column(Integer)   # sum of PR adjustments
    written_off_cents: Mapped[int] = mapped_column(Integer)              # sum of CO adjustments
    # Per line: {line_number, code_system, code, modifiers, units, billed_cents, allowed_cents, paid_cents,
    #            adjustments: [{group, code, amount_cents, description}]}
    lines: Mapped[list] = mapped_column(JSONB, default=list)
    raw: Mapped[str | None] = mapped_column(EncryptedText("remittances.raw"))   # the 835 content as received
    entered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    claim: Mapped[Claim] = relationship()


class Reconciliation(db.Model):
    """How a hybrid visit ended: owed (PR) minus paid -> balance charge, partial refund, or nothing."""
    __tablename__ = "reconciliations"
    __table_args__ = (
        CheckConstraint("outcome IN ('balance_charge', 'refund', 'none')", name="outcome"),
        CheckConstraint("(outcome = 'balance_charge') = (balance_charge_id IS NOT NULL)", name="charge_named"),
        CheckConstraint("outcome <> 'refund' OR refund_id IS NOT NULL", name="refund_named"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), unique=True)
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"))          # the claim that decided it
    patient_responsibility_cents: Mapped[int] = mapped_column(Integer)
    paid_cents: Mapped[int] = mapped_column(Integer)                               # deposit, net of refunds
    difference_cents: Mapped[int] = mapped_column(Integer)                         # owed - paid
    written_off_cents: Mapped[int] = mapped_column(Integer, default=0)             # CO: never billed
    insurance_paid_cents: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16))
    balance_charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    # Plain words for the patient (payer reasons as words, never a diagnosis).
    explanation: Mapped[str] = mapped_column(EncryptedText("reconciliations.explanation"), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ClearinghouseCursor(db.Model):
    """The largest remittance ``seq`` applied: the poll asks for what came after it."""
    __tablename__ = "clearinghouse_cursor"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    remittance_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
