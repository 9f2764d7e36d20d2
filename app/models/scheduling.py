"""Providers, specialties, appointment types and availability."""
from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import (Boolean, CheckConstraint, Column, DateTime, ForeignKey, Index, Integer, SmallInteger,
                        String, Table, Text, Time, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

PAYMENT_TIMINGS = ("deposit_to_book", "post_visit", "hybrid")
MODALITIES = ("telehealth", "in_person")
EXCEPTION_REASONS = ("vacation", "holiday", "other")

provider_types = Table(
    "provider_appointment_types", db.metadata,
    Column("provider_id", ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True),
    Column("type_id", ForeignKey("appointment_types.id", ondelete="CASCADE"), primary_key=True),
)


class Specialty(db.Model):
    __tablename__ = "specialties"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    # A specialty whose name alone reveals a condition (e.g. oncology): never
    # named in SMS, email or anything sent to Stripe.
    is_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)


class AppointmentType(db.Model):
    __tablename__ = "appointment_types"
    __table_args__ = (
        CheckConstraint("duration_minutes > 0", name="duration_positive"),
        CheckConstraint("buffer_before_minutes >= 0 AND buffer_after_minutes >= 0", name="buffers"),
        CheckConstraint("price_cents >= 0", name="price"),
        CheckConstraint("payment_timing IN ('deposit_to_book', 'post_visit', 'hybrid')", name="timing"),
        CheckConstraint("modality IN ('telehealth', 'in_person')", name="modality"),
        CheckConstraint("slot_interval_minutes IS NULL OR slot_interval_minutes > 0", name="interval"),
        CheckConstraint("late_cancel_policy IN ('none', 'fee') AND late_cancel_fee_cents >= 0",
                        name="late_cancel"),
        CheckConstraint("deposit_rule IN ('estimate', 'copay', 'percent', 'fixed')", name="deposit_rule"),
        CheckConstraint("deposit_percent IS NULL OR deposit_percent BETWEEN 0 AND 100", name="deposit_percent"),
        CheckConstraint("platform_fee_percent_bp IS NULL OR platform_fee_percent_bp BETWEEN 0 AND 10000",
                        name="platform_fee_percent"),
        CheckConstraint("platform_fee_fixed_cents IS NULL OR platform_fee_fixed_cents >= 0", name="platform_fee_fixed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    price_cents: Mapped[int] = mapped_column(Integer)
    payment_timing: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16))
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=60)
    horizon_days: Mapped[int] = mapped_column(Integer, default=60)
    cancellation_window_hours: Mapped[int] = mapped_column(Integer, default=24)
    slot_interval_minutes: Mapped[int | None] = mapped_column(Integer)
    # After the cancellation window: 'none' (no refund) or 'fee' (refund all but the late-cancel fee).
    late_cancel_policy: Mapped[str] = mapped_column(String(8), default="none", server_default="none")
    late_cancel_fee_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Intake and estimates (issue 15). The codes a visit of this type is expected to bill
    # ([{system, code, modifier, units}]), priced by the fee schedule for estimates and Good Faith
    # Estimates; the questionnaire ([{key, label, kind: text|yesno|choice, choices, required}]); the
    # intake sections this type requires (demographics, reason, questions, insurance, consents).
    expected_codes: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    intake_questions: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    intake_required: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    # Hybrid deposit: the estimate, the copay, a percentage of the estimate, or a fixed amount; capped.
    deposit_rule: Mapped[str] = mapped_column(String(10), default="estimate", server_default="estimate")
    deposit_percent: Mapped[int | None] = mapped_column(SmallInteger)
    deposit_fixed_cents: Mapped[int | None] = mapped_column(Integer)
    deposit_cap_cents: Mapped[int | None] = mapped_column(Integer)
    # Provider payouts (issue 16): the platform's fee on this type's visits, a percentage (basis
    # points: 1000 = 10%) and/or a fixed amount; both NULL: the clinic's default (ClinicSettings).
    platform_fee_percent_bp: Mapped[int | None] = mapped_column(Integer)
    platform_fee_fixed_cents: Mapped[int | None] = mapped_column(Integer)

    @property
    def interval_minutes(self) -> int:
        return self.slot_interval_minutes or self.duration_minutes


class Provider(db.Model):
    __tablename__ = "providers"
    __table_args__ = (Index("uq_providers_npi", "npi", unique=True, postgresql_where=text("npi IS NOT NULL")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    specialty_id: Mapped[int] = mapped_column(ForeignKey("specialties.id"))
    timezone: Mapped[str] = mapped_column(String(64))
    bio: Mapped[str] = mapped_column(Text, default="")
    offers_telehealth: Mapped[bool] = mapped_column(Boolean, default=True)
    offers_in_person: Mapped[bool] = mapped_column(Boolean, default=True)
    # The provider's NPI (claims' rendering provider, Good Faith Estimates).
    npi: Mapped[str | None] = mapped_column(String(10))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    user = relationship("User", lazy="joined")
    specialty: Mapped[Specialty] = relationship(lazy="joined")
    types: Mapped[list[AppointmentType]] = relationship(secondary=provider_types, order_by="AppointmentType.id")

    @property
    def display_name(self) -> str:
        return self.user.full_name

    def offers(self, appointment_type: AppointmentType) -> bool:
        if appointment_type.modality == "telehealth" and not self.offers_telehealth:
            return False
        if appointment_type.modality == "in_person" and not self.offers_in_person:
            return False
        return any(t.id == appointment_type.id for t in self.types)


class AvailabilityRule(db.Model):
    """Weekly hours in the provider's local time; optionally for one type only."""
    __tablename__ = "availability_rules"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("end_time > start_time", name="ordered"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)          # 0 = Monday
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    type_id: Mapped[int | None] = mapped_column(ForeignKey("appointment_types.id", ondelete="CASCADE"))


class AvailabilityException(db.Model):
    """Time off as a local date-time range in the provider's zone."""
    __tablename__ = "availability_exceptions"
    __table_args__ = (
        CheckConstraint("ends_local > starts_local", name="ordered"),
        CheckConstraint("reason IN ('vacation', 'holiday', 'other')", name="reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"), index=True)
    starts_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    ends_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    reason: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(200), default="")
