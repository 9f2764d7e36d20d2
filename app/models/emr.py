"""The basic EMR: an encounter per visit, its SOAP note, diagnoses, billing lines and addenda.

    Encounter: open -> signed

An open encounter is a draft: the SOAP fields, diagnoses and lines change as the
provider types, each save carrying the draft's ``version`` (a compare-and-swap:
two tabs never overwrite each other silently). Signing copies the fee in force
on the date of service onto each line, stores a SHA-256 content hash of the
note, diagnoses and lines (also written to the audit trail), and freezes them:
PostgreSQL refuses UPDATE and DELETE of a signed encounter and of the
diagnoses and lines of one (triggers, migration 0011), and refuses new ones.
Corrections are addenda, which are signed when written and never change.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (CheckConstraint, DateTime, ForeignKey, Integer, SmallInteger, String, UniqueConstraint,
                        func)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine
from app.models.types import EncryptedText

ENCOUNTER_TRANSITIONS = {("open", "sign"): "signed"}
ENCOUNTER_MACHINE = Machine("encounter", ENCOUNTER_TRANSITIONS)
SOAP_FIELDS = ("subjective", "objective", "assessment", "plan")
MAX_DIAGNOSES = 12          # the claim form's limit (pointers A-L)
MAX_LINES = 50


class Encounter(db.Model):
    __tablename__ = "encounters"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'signed')", name="status"),
        CheckConstraint("status <> 'signed' OR (signed_at IS NOT NULL AND signed_by_id IS NOT NULL "
                        "AND content_hash IS NOT NULL)", name="signed_complete"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    status: Mapped[str] = mapped_column(String(8), default="open")
    version: Mapped[int] = mapped_column(Integer, default=1)        # bumped by every saved draft
    subjective: Mapped[str | None] = mapped_column(EncryptedText("encounters.subjective"))
    objective: Mapped[str | None] = mapped_column(EncryptedText("encounters.objective"))
    assessment: Mapped[str | None] = mapped_column(EncryptedText("encounters.assessment"))
    plan: Mapped[str | None] = mapped_column(EncryptedText("encounters.plan"))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    opened_from: Mapped[str] = mapped_column(String(16), default="day_view")   # check_in | telehealth | day_view
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    total_cents: Mapped[int | None] = mapped_column(Integer)           # the priced lines' sum, set at signing
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    appointment = relationship("Appointment")
    diagnoses: Mapped[list["EncounterDiagnosis"]] = relationship(
        back_populates="encounter", order_by="EncounterDiagnosis.position")
    lines: Mapped[list["EncounterLine"]] = relationship(back_populates="encounter",
                                                        order_by="EncounterLine.position")
    addenda: Mapped[list["Addendum"]] = relationship(back_populates="encounter", order_by="Addendum.id")

    @property
    def is_signed(self) -> bool:
        return self.status == "signed"

    def transition(self, action: str) -> str:
        """The one writer of ``status`` (ENCOUNTER_TRANSITIONS)."""
        self.status = ENCOUNTER_MACHINE.next(self.status, action)
        return self.status


class EncounterDiagnosis(db.Model):
    """An ICD-10-CM code on the encounter; ``position`` 1..12 is what line pointers name."""
    __tablename__ = "encounter_diagnoses"
    __table_args__ = (
        UniqueConstraint("encounter_id", "position", name="uq_encounter_diagnoses_position"),
        UniqueConstraint("encounter_id", "code", name="uq_encounter_diagnoses_code"),
        CheckConstraint(f"position BETWEEN 1 AND {MAX_DIAGNOSES}", name="position"),
        CheckConstraint("code ~ '^[A-Z][0-9][0-9A-Z](\\.[0-9A-Z]{1,4})?$'", name="code_format"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    code: Mapped[str] = mapped_column(String(8))

    encounter: Mapped[Encounter] = relationship(back_populates="diagnoses")


class EncounterLine(db.Model):
    """A billing line: code (system copied), modifier, units, diagnosis pointers; priced at signing."""
    __tablename__ = "encounter_lines"
    __table_args__ = (
        UniqueConstraint("encounter_id", "position", name="uq_encounter_lines_position"),
        CheckConstraint("units BETWEEN 1 AND 99", name="units"),
        CheckConstraint("modifier ~ '^([A-Z0-9]{2})?$'", name="modifier_format"),
        CheckConstraint("(unit_price_cents IS NULL) = (amount_cents IS NULL)", name="priced_together"),
        CheckConstraint("amount_cents IS NULL OR (unit_price_cents > 0 AND amount_cents = unit_price_cents * units)",
                        name="amount"),
        CheckConstraint("cardinality(diagnosis_pointers) BETWEEN 1 AND 4", name="pointers"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    billing_code_id: Mapped[int] = mapped_column(ForeignKey("billing_codes.id", ondelete="RESTRICT"))
    code_system: Mapped[str] = mapped_column(String(10))
    code: Mapped[str] = mapped_column(String(20))
    modifier: Mapped[str] = mapped_column(String(2), default="")
    units: Mapped[int] = mapped_column(SmallInteger, default=1)
    diagnosis_pointers: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))   # positions of diagnoses
    unit_price_cents: Mapped[int | None] = mapped_column(Integer)
    amount_cents: Mapped[int | None] = mapped_column(Integer)
    fee_schedule_entry_id: Mapped[int | None] = mapped_column(ForeignKey("fee_schedule.id", ondelete="RESTRICT"))

    encounter: Mapped[Encounter] = relationship(back_populates="lines")
    billing_code = relationship("BillingCode")


class Addendum(db.Model):
    """A correction after signing: dated, signed by its author when written, appended, never changed."""
    __tablename__ = "encounter_addenda"
    __table_args__ = (CheckConstraint("length(content_hash) = 64", name="hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    text: Mapped[str] = mapped_column(EncryptedText("encounter_addenda.text"))
    signed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content_hash: Mapped[str] = mapped_column(String(64))

    encounter: Mapped[Encounter] = relationship(back_populates="addenda")
