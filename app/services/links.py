"""One-click links: signed (itsdangerous), bound to a user and an appointment,
expiring, single use. Opening a link (GET) only shows a page — link previews
fetch links — and only the person's tap (POST) uses it."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import Appointment, LinkToken, User
from app.services import DomainError, audit
from app.services.audit import Actor


class LinkInvalid(DomainError):
    def __init__(self, kind: str, link: LinkToken | None = None):
        messages = {
            "tampered": "This link is not valid.",
            "expired": "This link has expired.",
            "used": "This link has already been used.",
        }
        super().__init__(messages[kind])
        self.kind, self.link = kind, link


def _serializer(secret: str, purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=f"link:{purpose}")


def issue(session: Session, *, secret: str, purpose: str, user: User, now: datetime, ttl: timedelta,
          appointment: Appointment | None = None, not_after: datetime | None = None) -> str:
    """Store the link and return its signed token (carrying only the link's id)."""
    expires = now + ttl
    if not_after is not None:
        expires = min(expires, not_after)
    link = LinkToken(id=uuid.uuid4(), purpose=purpose, user_id=user.id,
                     appointment_id=appointment.id if appointment else None, expires_at=expires)
    session.add(link)
    session.flush()
    audit.record(session, actor=Actor.system("links"), action="link.issued", subject_user_id=user.id,
                 appointment_id=link.appointment_id, details={"purpose": purpose, "link_id": str(link.id),
                                                              "expires_at": expires.isoformat()})
    return _serializer(secret, purpose).dumps(str(link.id))


def resolve(session: Session, token: str, *, secret: str, purpose: str, now: datetime) -> LinkToken:
    """The link a token names, if it is genuine, unexpired and unused; LinkInvalid otherwise."""
    try:
        link_id = uuid.UUID(_serializer(secret, purpose).loads(token))
    except (BadSignature, ValueError, TypeError):
        raise LinkInvalid("tampered") from None
    link = session.get(LinkToken, link_id)
    if link is None or link.purpose != purpose:
        raise LinkInvalid("tampered")
    if link.used_at is not None:
        raise LinkInvalid("used", link)
    if link.expires_at <= now:
        raise LinkInvalid("expired", link)
    return link


def use(session: Session, link: LinkToken, *, now: datetime) -> None:
    """Mark it used (a compare-and-swap: two taps, one use)."""
    done = session.execute(update(LinkToken).where(LinkToken.id == link.id, LinkToken.used_at.is_(None))
                           .values(used_at=now).returning(LinkToken.id)).first()
    if done is None:
        raise LinkInvalid("used", link)
    audit.record(session, actor=Actor("user", link.user_id, None), action="link.used",
                 subject_user_id=link.user_id, appointment_id=link.appointment_id,
                 details={"purpose": link.purpose, "link_id": str(link.id)})
