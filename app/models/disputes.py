"""Disputes (issue 16): a patient's bank disputes a charge.

A Dispute mirrors Stripe's dispute (Stripe is the truth: every status it reports is applied, an
older report is ignored by ``last_event_created``). The row is made from ``charge.dispute.*``
events (webhook) and from the poll that lists recent disputes (a lost webhook), once per Stripe id.

Stripe's statuses: warning_needs_response, warning_under_review, warning_closed (inquiries),
needs_response, under_review, won, lost. ``OPEN`` ones block a refund of the charge unless Stripe
says ``is_charge_refundable``.

Evidence is assembled by app/services/disputes.py from the visit under the minimum-necessary rule
(no note text, diagnosis, code, type name, specialty, message text or IP address): ``evidence``
holds the proposed fields ``{field: text}``, ``approved`` the names billing approved, and
``extra_text`` what billing added (encrypted: it is typed by a person). ``submitted_evidence`` is
exactly what was sent to Stripe.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import EncryptedText

DISPUTE_STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed", "needs_response",
                    "under_review", "won", "lost")
OPEN = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
NEEDS_RESPONSE = ("warning_needs_response", "needs_response")
CLOSED = ("warning_closed", "won", "lost")


class Dispute(db.Model):
    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint("status IN ('warning_needs_response', 'warning_under_review', 'warning_closed', "
                        "'needs_response', 'under_review', 'won', 'lost')", name="status"),
        CheckConstraint("amount_cents >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str] = mapped_column(String(255), index=True)
    # Ours, when the charge is one of ours (else the dispute is still listed, unlinked).
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    reason: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24))
    is_charge_refundable: Mapped[bool] = mapped_column(Boolean, default=False)
    due_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    evidence: Mapped[dict] = mapped_column(JSONB, default=dict)
    approved: Mapped[list] = mapped_column(JSONB, default=list)
    extra_text: Mapped[str | None] = mapped_column(EncryptedText("disputes.extra_text"))
    submitted_evidence: Mapped[dict | None] = mapped_column(JSONB)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_created: Mapped[int | None] = mapped_column(BigInteger)
    alerted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    charge = relationship("Charge")
    appointment = relationship("Appointment")

    @property
    def open(self) -> bool:
        return self.status in OPEN

    @property
    def needs_response(self) -> bool:
        return self.status in NEEDS_RESPONSE

    @property
    def blocks_refund(self) -> bool:
        """Stripe refuses a refund of a charge with an open dispute (unless the dispute says
        ``is_charge_refundable``) and of one lost to a dispute."""
        return (self.open and not self.is_charge_refundable) or self.status == "lost"
