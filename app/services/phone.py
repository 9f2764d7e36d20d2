"""Phone numbers: verification by an SMS code, changing the number, STOP/START.

No reminder or link goes by SMS to a number until its owner proves it with a
code sent to it (a wrong number must not learn about someone's visits): until
then ``notifications.address_for`` answers email. The code is the one SMS that
goes to an unverified number. It is stored only as an HMAC (keyed with the
app's secret), expires after ``PHONE_CODE_TTL`` and allows ``MAX_TRIES``
wrong tries; a new code replaces the previous one.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l, lazy_ngettext
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import PhoneVerification, SmsOptOut, User
from app.services import DomainError, audit, field_crypto, notifications
from app.services.audit import Actor

MAX_TRIES = 5
CODE_DIGITS = 6


class NoPhone(DomainError):
    def __init__(self):
        super().__init__(_l("Add your mobile number first."))


class AlreadyVerified(DomainError):
    def __init__(self):
        super().__init__(_l("Your number is already verified."))


def code_hash(secret_key: str, *, user_id: int, phone: str, code: str) -> str:
    message = f"{user_id}:{phone}:{code}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def pending(session: Session, user: User) -> PhoneVerification | None:
    """The live code for the user's current number, if any (expired ones count: they say so)."""
    if not user.phone:
        return None
    return session.scalar(
        select(PhoneVerification)
        .where(PhoneVerification.user_id == user.id,
               PhoneVerification.phone_hash == user.phone_hash,
               PhoneVerification.verified_at.is_(None))
        .order_by(PhoneVerification.created_at.desc(), PhoneVerification.id.desc()).limit(1))


def send_code(session: Session, *, user: User, actor: Actor, now: datetime, ttl: timedelta,
              secret_key: str, code: str | None = None) -> PhoneVerification:
    """Store a fresh code (hashed) and queue the SMS carrying it to the (unverified) number."""
    if not user.phone:
        raise NoPhone()
    if user.phone_verified_at is not None:
        raise AlreadyVerified()
    code = code or new_code()
    # A new code replaces any earlier one still open.
    session.execute(update(PhoneVerification)
                    .where(PhoneVerification.user_id == user.id, PhoneVerification.verified_at.is_(None),
                           PhoneVerification.expires_at > now)
                    .values(expires_at=now))
    verification = PhoneVerification(user_id=user.id, phone=user.phone, expires_at=now + ttl, attempts=0,
                                     code_hash=code_hash(secret_key, user_id=user.id, phone=user.phone,
                                                         code=code))
    session.add(verification)
    session.flush()
    notifications.queue(session, dedupe_key=f"phone_code:{verification.id}", template="phone_code", user=user,
                        scheduled_for=now, address=notifications.Address("sms", user.phone),
                        context={"code": code})
    audit.record(session, actor=actor, action="phone.code_sent", subject_user_id=user.id,
                 patient_id=user.patient.id if user.patient else None,
                 details={"verification_id": verification.id})
    return verification


@dataclass(frozen=True)
class CheckResult:
    status: str                 # verified | wrong | expired | locked | no_code | already
    tries_left: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "already")

    @property
    def message(self) -> str:
        # Lazy: the words are made in the viewer's language when shown (str()).
        return {
            "verified": _l("Your number is verified."),
            "already": _l("Your number is already verified."),
            "wrong": lazy_ngettext("That code is not right. Check the text message and try again (%(num)d try left).",
                                   "That code is not right. Check the text message and try again (%(num)d tries left).",
                                   self.tries_left),
            "expired": _l("That code has expired. Send yourself a new code."),
            "locked": _l("Too many wrong tries for this code. Send yourself a new code."),
            "no_code": _l("There is no code waiting for this number. Send yourself a code first."),
        }[self.status]


def check_code(session: Session, *, user: User, code: str, actor: Actor, now: datetime,
               secret_key: str) -> CheckResult:
    """Check a code; every outcome is stored (wrong tries count), so the caller commits either way."""
    if user.phone_verified_at is not None:
        return CheckResult("already")
    verification = pending(session, user)
    if verification is None:
        return CheckResult("no_code")
    session.refresh(verification, with_for_update=True)     # two tries at once count as two
    patient_id = user.patient.id if user.patient else None
    if verification.attempts >= MAX_TRIES:
        audit.record(session, actor=actor, action="phone.code_rejected", outcome="failure", reason="locked",
                     subject_user_id=user.id, patient_id=patient_id)
        return CheckResult("locked")
    if verification.expires_at <= now:
        audit.record(session, actor=actor, action="phone.code_rejected", outcome="failure", reason="expired",
                     subject_user_id=user.id, patient_id=patient_id)
        return CheckResult("expired")
    expected = code_hash(secret_key, user_id=user.id, phone=verification.phone, code=(code or "").strip())
    if not hmac.compare_digest(expected, verification.code_hash):
        verification.attempts += 1
        left = MAX_TRIES - verification.attempts
        audit.record(session, actor=actor, action="phone.code_rejected", outcome="failure", reason="wrong",
                     subject_user_id=user.id, patient_id=patient_id,
                     details={"verification_id": verification.id, "attempts": verification.attempts})
        return CheckResult("wrong" if left > 0 else "locked", tries_left=max(left, 0))
    verification.verified_at = now
    user.phone_verified_at = now
    audit.record(session, actor=actor, action="phone.verified", subject_user_id=user.id, patient_id=patient_id,
                 details={"verification_id": verification.id})
    return CheckResult("verified")


def change_phone(session: Session, *, user: User, phone: str, actor: Actor) -> bool:
    """A new number starts unverified (messages go by email until it is). False if unchanged."""
    if phone == user.phone:
        return False
    user.phone = phone
    user.phone_verified_at = None
    audit.record(session, actor=actor, action="phone.changed", subject_user_id=user.id,
                 patient_id=user.patient.id if user.patient else None)
    return True


# -- STOP / START from Twilio ----------------------------------------------------------------------

def users_with_phone(session: Session, phone: str) -> list[User]:
    """The accounts with this number (E.164), found by its look-up hash (the number is encrypted)."""
    return list(session.scalars(select(User).where(User.phone_hash == field_crypto.phone_hash(phone))
                                .order_by(User.id)))


def set_opt_out(session: Session, *, phone: str, opted_out: bool, actor: Actor) -> bool:
    """Store STOP (True) or START (False) for a number. False when nothing changed."""
    key = field_crypto.phone_hash(phone)            # opt-outs are keyed by the hash, not the number
    row = session.get(SmsOptOut, key, with_for_update=True)
    current = bool(row and row.opted_out)
    if current == opted_out:
        return False
    if row is None:
        row = SmsOptOut(phone_hash=key, opted_out=opted_out)
        session.add(row)
    else:
        row.opted_out = opted_out
    session.flush()
    action = "sms.opted_out" if opted_out else "sms.opted_in"
    owners = users_with_phone(session, phone)
    for user in owners:
        audit.record(session, actor=actor, action=action, subject_user_id=user.id,
                     patient_id=user.patient.id if user.patient else None)
    if not owners:
        audit.record(session, actor=actor, action=action, details={"known_number": False})
    return True


# -- Twilio's webhooks: the signature and the reply (the SDK stays in app/integrations) ----------------

def twilio_signed(auth_token: str, url: str, params, signature: str | None) -> bool:
    """True if Twilio signed this request (HMAC with our auth token over the URL and the form)."""
    from app.integrations.twilio_sms import valid_signature

    return valid_signature(auth_token, url, params, signature)


def sms_reply(text: str | None = None) -> str:
    """TwiML answering an inbound SMS: one reply message, or none."""
    from app.integrations.twilio_sms import twiml_reply

    return twiml_reply(text)
