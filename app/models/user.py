"""Accounts: one users table for every role, and the patient profile."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.extensions import db
from app.models.types import EncryptedText, created_at_column

PATIENT = "patient"
STAFF_ROLES = ("provider", "billing", "admin")
ROLES = (PATIENT,) + STAFF_ROLES
# The languages the portal speaks (users.locale; app/i18n.py chooses among them).
LOCALES = ("en", "es")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('patient', 'provider', 'billing', 'admin')", name="role"),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        CheckConstraint("locale IN ('en', 'es')", name="locale"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The email stays readable (mail is sent to it; the admin's access review searches it); look-ups
    # go by its keyed hash (app/services/field_crypto.py), set with the email by the validator below.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    email_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    full_name: Mapped[str] = mapped_column(String(120))
    # Encrypted at rest (E.164 inside); looked up by its keyed hash (Twilio STOP/START, opt-outs).
    phone: Mapped[str | None] = mapped_column(EncryptedText("users.phone"))
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # The patient's language for pages, messages and PDFs ('en' or 'es'; app/i18n.py); None: the
    # browser's Accept-Language decides pages, English the messages.
    locale: Mapped[str | None] = mapped_column(String(8))
    # No reminder or link goes by SMS until the number is verified by a code.
    phone_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    is_active_account: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # MFA (app/services/mfa.py): the TOTP secret (base32; never logged, never in repr), when the
    # enrolment was confirmed, and the last time step a code was accepted for (no replay).
    mfa_secret: Mapped[str | None] = mapped_column(EncryptedText("users.mfa_secret"))
    mfa_enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)

    patient: Mapped["Patient | None"] = relationship(back_populates="user", uselist=False)

    @validates("email")
    def _hash_email(self, _key, value):
        from app.services import field_crypto

        self.email_hash = field_crypto.email_hash(value)
        return value

    @validates("phone")
    def _hash_phone(self, _key, value):
        from app.services import field_crypto

        self.phone_hash = field_crypto.phone_hash(value)
        return value

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.is_active_account

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def mfa_enrolled(self) -> bool:
        return self.mfa_enrolled_at is not None and self.mfa_secret is not None

    def __repr__(self) -> str:  # no PHI in logs: id and role only
        return f"<User {self.id} {self.role}>"


class Patient(db.Model):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    # One Stripe Customer per patient; created on the first payment, with opaque metadata only.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    default_payment_method_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at_column()

    user: Mapped[User] = relationship(back_populates="patient")

    def __repr__(self) -> str:
        return f"<Patient {self.id}>"
