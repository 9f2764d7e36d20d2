"""Accounts: patient sign-up, staff creation, password checks."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher, Type
from flask_babel import lazy_gettext as _l
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Patient, User
from app.models.user import LOCALES, STAFF_ROLES
from app.services import DomainError, audit, field_crypto, notifications
from app.services.audit import Actor

# argon2id with RFC 9106's "low memory" profile (argon2-cffi's defaults, spelled out so a library
# upgrade cannot change them silently): 64 MiB, 3 passes, 4 lanes, 16-byte salt, 32-byte hash.
# Above OWASP's floor for argon2id (19 MiB, t=2, p=1). A hash made with other parameters is
# re-made at the next successful sign-in (``authenticate``: check_needs_rehash).
ARGON2_PARAMETERS = dict(time_cost=3, memory_cost=64 * 1024, parallelism=4, hash_len=32, salt_len=16,
                         type=Type.ID)
_hasher = PasswordHasher(**ARGON2_PARAMETERS)
# A hash of a random password, verified against when the account does not
# exist, so a wrong email costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-for-timing")


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
        raise ValueError(_l("Enter a phone number with its country code, like +1 555 123 4567."))
    return digits


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(_l("Choose a timezone from the list, like America/New_York.")) from None
    return name


def check_password(password: str, *, email: str | None = None) -> str:
    """The password policy (app/services/passwords.py): PasswordRefused, a ValueError, when it says no."""
    from app.services import passwords       # passwords imports this module

    return passwords.check_policy(password, email=email)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def find_by_email(session: Session, email: str) -> User | None:
    """By the email's keyed look-up hash (users.email_hash; app/services/field_crypto.py)."""
    return session.scalar(select(User).where(User.email_hash == field_crypto.email_hash(normalize_email(email))))


def register_patient(session: Session, *, full_name: str, email: str, phone: str,
                     timezone_name: str, password: str, actor: Actor, locale: str | None = None) -> User:
    check_password(password, email=email)
    if find_by_email(session, email) is not None:
        raise EmailTaken()
    user = User(email=normalize_email(email), password_hash=hash_password(password),
                role="patient", full_name=full_name.strip(), phone=phone,
                timezone=timezone_name, locale=locale if locale in LOCALES else None)
    user.patient = Patient()
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="account.patient_registered",
                 subject_user_id=user.id, patient_id=user.patient.id)
    return user


def sign_up_patient(session: Session, *, full_name: str, email: str, phone: str, timezone_name: str,
                    password: str, actor: Actor, now: datetime, locale: str | None = None) -> User | None:
    """Sign-up that does not tell whether the email already has an account.

    A new email: the account is made and its owner gets a "your account is ready" email. A taken
    one: nothing is made, the same work is done (a password hash, one email queued) and the owner
    gets a "someone tried to register with your email" email instead, at most one an hour. The
    caller answers both the same way; returns the new user, or None for a taken email.
    """
    try:
        user = register_patient(session, full_name=full_name, email=email, phone=phone,
                                timezone_name=timezone_name, password=password, actor=actor, locale=locale)
    except EmailTaken:
        existing = find_by_email(session, email)
    else:
        notifications.queue(session, dedupe_key=f"account_created:{user.id}", template="account_created",
                            user=user, scheduled_for=now, address=notifications.Address("email", user.email))
        return user
    hash_password(password)                     # as long as a real sign-up takes: the time tells nothing
    notifications.queue(session, dedupe_key=f"signup_attempt:{existing.id}:{now:%Y%m%dT%H}",
                        template="signup_attempt", user=existing, scheduled_for=now,
                        address=notifications.Address("email", existing.email))
    audit.record(session, actor=actor, action="account.signup_email_taken", outcome="failure",
                 subject_user_id=existing.id)
    return None


def set_locale(session: Session, user: User, locale: str, *, actor: Actor) -> bool:
    """The language of the patient's pages, messages and PDFs; True when it changed (audited)."""
    if locale not in LOCALES:
        raise ValueError(f"unknown language {locale!r}")
    if user.locale == locale:
        return False
    previous, user.locale = user.locale, locale
    audit.record(session, actor=actor, action="account.locale_changed", subject_user_id=user.id,
                 details={"from": previous, "to": locale})
    return True


def create_staff(session: Session, *, actor: Actor, full_name: str, email: str, role: str,
                 timezone_name: str, password: str, phone: str | None = None) -> User:
    if role not in STAFF_ROLES:
        raise DomainError(f"Unknown staff role {role!r}.")
    check_password(password, email=email)
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
