"""Accounts: patient sign-up, staff creation, password checks."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Patient, User
from app.models.user import STAFF_ROLES
from app.services import DomainError, audit
from app.services.audit import Actor

_hasher = PasswordHasher()
# A hash of a random password, verified against when the account does not
# exist, so a wrong email costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-for-timing")
MIN_PASSWORD = 10


class EmailTaken(DomainError):
    def __init__(self):
        super().__init__("An account with this email already exists. Sign in instead.")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def normalize_phone(phone: str) -> str:
    """E.164: '+' and 8-15 digits; a 10-digit number is taken as North American."""
    digits = re.sub(r"[\s\-().]", "", phone or "")
    if re.fullmatch(r"\d{10}", digits):
        digits = "+1" + digits
    if not re.fullmatch(r"\+[1-9]\d{7,14}", digits):
        raise ValueError("Enter a phone number with its country code, like +1 555 123 4567.")
    return digits


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("Choose a timezone from the list, like America/New_York.") from None
    return name


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"Use at least {MIN_PASSWORD} characters.")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def find_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def register_patient(session: Session, *, full_name: str, email: str, phone: str,
                     timezone_name: str, password: str, actor: Actor) -> User:
    if find_by_email(session, email) is not None:
        raise EmailTaken()
    user = User(email=normalize_email(email), password_hash=hash_password(password),
                role="patient", full_name=full_name.strip(), phone=phone,
                timezone=timezone_name)
    user.patient = Patient()
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="account.patient_registered",
                 subject_user_id=user.id, patient_id=user.patient.id)
    return user


def create_staff(session: Session, *, actor: Actor, full_name: str, email: str, role: str,
                 timezone_name: str, password: str, phone: str | None = None) -> User:
    if role not in STAFF_ROLES:
        raise DomainError(f"Unknown staff role {role!r}.")
    if find_by_email(session, email) is not None:
        raise EmailTaken()
    user = User(email=normalize_email(email), password_hash=hash_password(password), role=role,
                full_name=full_name.strip(), phone=phone, timezone=timezone_name)
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="account.staff_created", subject_user_id=user.id,
                 details={"role": role})
    return user


def authenticate(session: Session, *, email: str, password: str) -> User | None:
    """The user if the password is right and the account active; audited either way."""
    user = find_by_email(session, email)
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if user is None or not ok or not user.is_active_account:
        audit.record(session, actor=Actor("anonymous"), action="auth.login", outcome="failure",
                     subject_user_id=user.id if user else None)
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = datetime.now(timezone.utc)
    audit.record(session, actor=Actor.of(user), action="auth.login", subject_user_id=user.id)
    return user
