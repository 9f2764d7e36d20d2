"""Server-side sign-in sessions: created at sign-in, revoked at sign-out, by a password or MFA
reset (all of the user's), or by an admin; each ends at an absolute lifetime.

The cookie (Flask's signed session) carries a random token; the ``user_sessions`` row is keyed by
its SHA-256. Every request's user loader (app/__init__.py) finds the user through a live row in
one statement, so a revoked, expired or unknown token is an anonymous request. Rows are written
at sign-in, step-up and revocation only: never on an ordinary request (the idle-logoff stamp stays
in the cookie). Times are the database's (``now()``), like the idle logoff's wall clock.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from app.models import User, UserSession
from app.services import audit
from app.services.audit import Actor


def session_id(token: str) -> str:
    """The row id of a cookie token (its SHA-256): the database never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


def lifetime_for(settings, user: User, *, remember: bool) -> timedelta:
    """The absolute lifetime: staff always SESSION_LIFETIME_STAFF; a patient's is
    SESSION_LIFETIME_REMEMBER when they ticked "remember me", SESSION_LIFETIME_PATIENT otherwise."""
    if user.is_staff:
        return settings.SESSION_LIFETIME_STAFF
    return settings.SESSION_LIFETIME_REMEMBER if remember else settings.SESSION_LIFETIME_PATIENT


def start(session: Session, *, user: User, lifetime: timedelta, remember: bool = False,
          mfa_verified_at: datetime | None = None) -> str:
    """A new session row for a completed sign-in; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    session.add(UserSession(id=session_id(token), user_id=user.id, remember=remember,
                            expires_at=func.now() + lifetime, mfa_verified_at=mfa_verified_at))
    session.flush()
    return token


def revoke(session: Session, *, token: str | None, reason: str) -> bool:
    """Revoke one session (sign-out, idle logoff); True if a live row was revoked."""
    if not token:
        return False
    result = session.execute(update(UserSession).where(
        UserSession.id == session_id(token), UserSession.revoked_at.is_(None)
    ).values(revoked_at=func.now(), revoked_reason=reason))
    return result.rowcount > 0


def revoke_all(session: Session, *, user_id: int, actor: Actor, reason: str) -> int:
    """Revoke every live session of a user (password reset, MFA reset, an admin); audited."""
    result = session.execute(update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    ).values(revoked_at=func.now(), revoked_reason=reason))
    audit.record(session, actor=actor, action="auth.sessions_revoked", subject_user_id=user_id,
                 details={"reason": reason, "count": result.rowcount})
    return result.rowcount


def mark_mfa(row: UserSession, *, at: datetime) -> None:
    """This session just proved the second factor (sign-in, enrolment or step-up)."""
    row.mfa_verified_at = at
