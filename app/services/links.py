"""One-click links: signed (itsdangerous), bound to a user and an appointment,
expiring, single use. Opening a link (GET) only shows a page — link previews
fetch links — and only the person's tap (POST) uses it. Confirming an
appointment voids its unused links back to checkout (``void_for_appointment``)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import Appointment, AuditEvent, LinkToken, User
from app.models.appointment import BOOKED
from app.services import DomainError, audit
from app.services.audit import Actor

RETRY_CHECKOUT = "retry_checkout"


class LinkInvalid(DomainError):
    def __init__(self, kind: str, link: LinkToken | None = None):
        messages = {
            "tampered": _l("This link is not valid."),
            "expired": _l("This link has expired."),
            "used": _l("This link has already been used."),
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


def use(session: Session, link: LinkToken, *, now: datetime, hold: Appointment | None = None) -> None:
    """Mark it used (a compare-and-swap: two taps, one use); ``hold`` is what the tap took."""
    done = session.execute(update(LinkToken).where(LinkToken.id == link.id, LinkToken.used_at.is_(None))
                           .values(used_at=now).returning(LinkToken.id)).first()
    if done is None:
        raise LinkInvalid("used", link)
    details = {"purpose": link.purpose, "link_id": str(link.id)}
    if hold is not None:
        details["hold_id"] = hold.id
    audit.record(session, actor=Actor("user", link.user_id, None), action="link.used",
                 subject_user_id=link.user_id, appointment_id=link.appointment_id, details=details)


def void_for_appointment(session: Session, appointment: Appointment, *, now: datetime) -> int:
    """The appointment is booked: its outstanding links back to checkout are spent.

    Called by ``booking.confirm`` in the confirmation's own transaction (whichever
    path confirmed), so a decline message's link can never start a second booking."""
    voided = session.execute(
        update(LinkToken).where(LinkToken.appointment_id == appointment.id, LinkToken.purpose == RETRY_CHECKOUT,
                                LinkToken.used_at.is_(None))
        .values(used_at=now).returning(LinkToken.id, LinkToken.user_id)).all()
    for link_id, user_id in voided:
        audit.record(session, actor=Actor.system("links"), action="link.voided", subject_user_id=user_id,
                     appointment_id=appointment.id, patient_id=appointment.patient_id, at=now,
                     details={"purpose": RETRY_CHECKOUT, "link_id": str(link_id), "reason": "booked"})
    return len(voided)


def booked_appointment(session: Session, link: LinkToken | None) -> Appointment | None:
    """The booked appointment a retry link leads to, if any: its own appointment once
    confirmed (or checked in, or completed), or the hold its tap took, once that is booked."""
    if link is None or link.purpose != RETRY_CHECKOUT or link.appointment is None:
        return None
    if link.appointment.status in BOOKED:
        return link.appointment
    if link.used_at is None:
        return None
    hold_id = session.scalar(select(AuditEvent.details["hold_id"].astext).where(
        AuditEvent.action == "link.used", AuditEvent.appointment_id == link.appointment_id,
        AuditEvent.details["link_id"].astext == str(link.id)).limit(1))
    if not hold_id:
        return None
    taken = session.get(Appointment, int(hold_id))
    if taken is None or taken.patient_id != link.appointment.patient_id or taken.status not in BOOKED:
        return None
    return taken
