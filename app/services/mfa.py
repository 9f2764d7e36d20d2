"""Second factor: TOTP (RFC 6238, pyotp) with one-time recovery codes.

Staff must enrol (app/blueprints/stepup.py ``enrolment_gate`` keeps an unenrolled staff account on
the enrolment page); patients may opt in. A code is accepted for the current 30-second step or
one either side (clock drift), and never for a step at or before the last one accepted, so a
code seen over a shoulder cannot be replayed. Recovery codes are random, shown once and stored
as SHA-256 hashes; each works once. The secret is never logged (``User.__repr__`` shows id and
role only) and leaves the server only on the enrolment page, as the QR code and its text.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.models import RecoveryCode, User
from app.services import DomainError, audit
from app.services.audit import Actor

STEP = 30                 # seconds per TOTP step
DRIFT_STEPS = 1           # steps accepted either side of the current one
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"   # no 0/o, 1/l/i


class WrongCode(DomainError):
    def __init__(self):
        super().__init__(_l("That code is not right. Enter the 6 digits your authenticator app shows now."))


@dataclass(frozen=True)
class Check:
    ok: bool
    method: str | None = None          # "totp" | "recovery"
    recovery_left: int | None = None


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """An inline <svg> of the otpauth:// URI (no XML declaration, no fixed size: CSS scales it)."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=2, omitsize=True, dark="#111",
                                                   light="#fff")


def code_at(secret: str, at: datetime) -> str:
    """The code an authenticator shows at ``at`` (tests sign in with it)."""
    return pyotp.TOTP(secret).at(at)


def _step_of(at: datetime) -> int:
    return int(at.timestamp()) // STEP


def _normalize(code: str) -> str:
    """ASCII letters and digits only (spaces, dashes and anything else typed around a code dropped)."""
    return re.sub(r"[^a-z0-9]", "", (code or "").lower())


def matching_step(secret: str, code: str, *, at: datetime, after: int | None) -> int | None:
    """The time step ``code`` belongs to (within the drift), if later than ``after``."""
    code = _normalize(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now_step = _step_of(at)
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.at(step * STEP), code):
            return step
    return None


def _hash_recovery(code: str) -> str:
    return hashlib.sha256(_normalize(code).encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _replace_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash_recovery(c)) for c in codes)
    return codes


def enrol(session: Session, *, user: User, secret: str, code: str, at: datetime, actor: Actor) -> list[str]:
    """Confirm an enrolment with a code from the new authenticator; returns the recovery codes
    (shown once). Raises WrongCode (audited) when the code does not match."""
    step = matching_step(secret, code, at=at, after=None)
    if step is None:
        audit.record(session, actor=actor, action="mfa.enrol", outcome="failure", subject_user_id=user.id)
        raise WrongCode()
    user.mfa_secret = secret
    user.mfa_enrolled_at = at
    user.mfa_last_step = step
    codes = _replace_recovery_codes(session, user)
    audit.record(session, actor=actor, action="mfa.enrolled", subject_user_id=user.id)
    return codes


def verify(session: Session, *, user: User, code: str, at: datetime, actor: Actor,
           purpose: str = "sign_in") -> Check:
    """Check a TOTP code, or else a recovery code (used up); audited either way.

    The user row is locked for the check, so two requests with the same code cannot both pass."""
    if not user.mfa_enrolled:
        return Check(False)
    locked = session.scalar(select(User).where(User.id == user.id).with_for_update()
                            .execution_options(populate_existing=True))
    step = matching_step(locked.mfa_secret, code, at=at, after=locked.mfa_last_step)
    if step is not None:
        locked.mfa_last_step = step
        audit.record(session, actor=actor, action="mfa.verified", subject_user_id=user.id,
                     details={"method": "totp", "purpose": purpose})
        return Check(True, "totp")
    normalized = _normalize(code)
    if len(normalized) == 10:
        used = session.execute(update(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _hash_recovery(normalized),
            RecoveryCode.used_at.is_(None)).values(used_at=at).returning(RecoveryCode.id)).first()
        if used is not None:
            left = recovery_codes_left(session, user)
            audit.record(session, actor=actor, action="mfa.recovery_code_used", subject_user_id=user.id,
                         details={"purpose": purpose, "left": left})
            return Check(True, "recovery", left)
    audit.record(session, actor=actor, action="mfa.verified", outcome="failure", subject_user_id=user.id,
                 details={"purpose": purpose})
    return Check(False)


def recovery_codes_left(session: Session, user: User) -> int:
    return session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0


def reset(session: Session, *, user: User, actor: Actor) -> None:
    """Remove the enrolment (an admin, for a lost phone): secret and recovery codes gone, every
    session of the user revoked; staff enrol again at their next sign-in. Audited."""
    from app.services import sessions

    user.mfa_secret = None
    user.mfa_enrolled_at = None
    user.mfa_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(session, actor=actor, action="mfa.reset", subject_user_id=user.id)
    sessions.revoke_all(session, user_id=user.id, actor=actor, reason="mfa_reset")
