"""The clinic's own settings, edited by the admin and used by pages and messages."""
from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class ClinicSettings(db.Model):
    __tablename__ = "clinic_settings"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("platform_fee_percent_bp BETWEEN 0 AND 10000 AND platform_fee_fixed_cents >= 0",
                        name="platform_fee"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    name: Mapped[str] = mapped_column(String(120), default="Clinic Portal")
    phone: Mapped[str] = mapped_column(String(20), default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # On Good Faith Estimates (45 CFR 149.610(c)) and claims: the clinic's NPI and tax id (TIN).
    npi: Mapped[str | None] = mapped_column(String(10))
    tax_id: Mapped[str | None] = mapped_column(String(12))
    # The platform's default fee on a paid visit (issue 16), when its type has no rule of its own:
    # a percentage in basis points (1000 = 10%) plus a fixed amount in cents.
    platform_fee_percent_bp: Mapped[int] = mapped_column(Integer, default=1000, server_default="1000")
    platform_fee_fixed_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
