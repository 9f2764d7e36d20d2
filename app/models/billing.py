"""Billing codes (HCPCS Level II, the clinic's LOCAL codes, a licensed clinic's CPT file) and the fee
schedule: a price per code and modifier, in force from a date.

A price is never edited in place for a past date that a signed visit used: signing copies the price
onto the billing line, so a later change never touches a signed visit (issue 14). A new price for a
code, modifier and date replaces that one row (the audit trail keeps the old price)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (Boolean, CheckConstraint, Date, DateTime, ForeignKey, Integer, String, Text,
                        UniqueConstraint, func)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

SYSTEMS = ("HCPCS", "LOCAL", "CPT")
PRICE_MAX_CENTS = 999_999_999          # $9,999,999.99: what the dollar fields accept


class BillingCode(db.Model):
    __tablename__ = "billing_codes"
    __table_args__ = (
        UniqueConstraint("system", "code", name="uq_billing_codes_system_code"),
        CheckConstraint("system IN ('HCPCS', 'LOCAL', 'CPT')", name="system"),
        CheckConstraint("code ~ '^[A-Z0-9][A-Z0-9.-]{0,19}$'", name="code_format"),
        CheckConstraint("length(descriptor) BETWEEN 1 AND 2000", name="descriptor_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(String(10))
    code: Mapped[str] = mapped_column(String(20))
    descriptor: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    prices: Mapped[list["FeeScheduleEntry"]] = relationship(back_populates="billing_code",
                                                             order_by="FeeScheduleEntry.effective_from")

    @property
    def licensed(self) -> bool:
        """CPT descriptors are the AMA's: shown to the clinic's users, never logged or shipped."""
        return self.system == "CPT"


class FeeScheduleEntry(db.Model):
    __tablename__ = "fee_schedule"
    __table_args__ = (
        UniqueConstraint("billing_code_id", "modifier", "effective_from", name="uq_fee_schedule_code_mod_from"),
        CheckConstraint("modifier ~ '^([A-Z0-9]{2})?$'", name="modifier_format"),
        CheckConstraint(f"price_cents > 0 AND price_cents <= {PRICE_MAX_CENTS}", name="price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    billing_code_id: Mapped[int] = mapped_column(ForeignKey("billing_codes.id", ondelete="RESTRICT"))
    modifier: Mapped[str] = mapped_column(String(2), default="", server_default="")
    price_cents: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)

    billing_code: Mapped[BillingCode] = relationship(back_populates="prices")
