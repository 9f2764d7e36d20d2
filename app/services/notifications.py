"""Notifications: which messages exist, to whom, by which channel, and their states.

Rows are the truth. ``queue`` stores a row (one per ``dedupe_key``) and, after
the commit, hands its id to RQ for ``scheduled_for``; ``claim`` is the
compare-and-swap on ``sent_at`` that makes a second run a no-op, and a lease:
``expire_leases`` takes back a row whose sender died. A failed send waits out
its backoff in ``scheduled_for``; the sweeper re-enqueues anything due and
unsent. A batch does the same for many rows in a few statements
(``lock_due_batch``, ``claim_batch``, ``lock_leases``). Messages say the minimum necessary: the
clinic's name and call-back number, the date and time in the recipient's
timezone, and a link into the portal — never a diagnosis, a reason for the
visit, a provider's name or a specialty.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from app.models import Appointment, Charge, Notification, PaymentAttempt, SmsOptOut, User
from app.models.appointment import BOOKED
from app.services import audit
from app.services.audit import Actor
from app.services.locale_format import format_local
from app.services.unit_of_work import request

REMINDER = "reminder"
SMS_TEMPLATES = {"reminder", "payment_declined", "hold_released", "provider_payment_alert", "phone_code",
                 "booking_canceled", "slot_released_provider", "refund_issued",
                 "visit_payment_failed", "visit_payment_received", "visit_final_notice", "waitlist_offer"}


@dataclass(frozen=True)
class Address:
    channel: str
    to: str


def sms_allowed(session: Session, user: User) -> bool:
    """SMS only to a verified number that has not opted out."""
    if not user.phone or user.phone_verified_at is None:
        return False
    opt = session.get(SmsOptOut, user.phone_hash)     # kept with the number (User._hash_phone)
    return not (opt and opt.opted_out)


def address_for(session: Session, user: User, *, prefer: str = "sms") -> Address:
    if prefer == "sms" and sms_allowed(session, user):
        return Address("sms", user.phone)
    return Address("email", user.email)


def queue(session: Session, *, dedupe_key: str, template: str, user: User, scheduled_for: datetime,
          appointment: Appointment | None = None, context: dict | None = None, prefer: str = "sms",
          address: Address | None = None) -> Notification:
    """Store the message once (by dedupe_key) and hand it to RQ after the commit."""
    existing = session.scalar(select(Notification).where(Notification.dedupe_key == dedupe_key))
    if existing is not None:
        return existing
    if template not in SMS_TEMPLATES:
        prefer = "email"
    address = address or address_for(session, user, prefer=prefer)
    notification = Notification(dedupe_key=dedupe_key, channel=address.channel, template=template,
                                recipient=address.to, user_id=user.id,
                                appointment_id=appointment.id if appointment else None,
                                context=context or {}, scheduled_for=scheduled_for, status="queued")
    session.add(notification)
    session.flush()
    audit.record(session, actor=Actor.system("notifications"), action="notification.queued",
                 appointment_id=notification.appointment_id, subject_user_id=user.id,
                 patient_id=appointment.patient_id if appointment else None,
                 details={"notification_id": notification.id, "template": template,
                          "channel": address.channel, "scheduled_for": scheduled_for.isoformat()})
    _enqueue_after_commit(session, notification)
    return notification


def _enqueue_after_commit(session: Session, notification: Notification) -> None:
    # Reminders go in batches: one job for every row due at that second (many visits share a start).
    request(session, "send_notification", notification.id, notification.scheduled_for, notification.attempts or 0,
            batch=notification.template == REMINDER)


def claim_attempt(session: Session, notification_id: int, *, now: datetime) -> int | None:
    """The compare-and-swap: only one run may send a row. The claim is a lease that starts at
    ``sent_at`` (see ``expire_leases``); returns its attempt number (the lease's token), or None
    when the row was not there to take."""
    return session.execute(
        Notification.transition_where("claim", Notification.id == notification_id, Notification.sent_at.is_(None),
                                      Notification.scheduled_for <= now)
        .values(sent_at=now, attempts=Notification.attempts + 1)
        .returning(Notification.attempts)).scalar()


def claim(session: Session, notification_id: int, *, now: datetime) -> bool:
    return claim_attempt(session, notification_id, now=now) is not None


def holds_lease(session: Session, notification: Notification, attempt: int, *, claimed_at: datetime) -> bool:
    """Before recording a result: lock the row and check the claim ``attempt`` is still its owner.
    A row the sweep took back (lease ran out) that no one has claimed since is claimed again here,
    so a late result is kept rather than sent a second time. False: another run owns the row now."""
    session.refresh(notification, with_for_update=True)
    return _owned(notification, attempt, claimed_at=claimed_at)


def _owned(notification: Notification, attempt: int, *, claimed_at: datetime) -> bool:
    if notification.attempts != attempt:
        return False
    if notification.status == "sending":
        return True
    if notification.status == "queued" and notification.sent_at is None:
        notification.transition("claim")
        notification.sent_at = claimed_at
        return True
    return False


# -- batches: the same claim and lease, for many rows in a few statements ---------------------------

def lock_due_batch(session: Session, *, now: datetime, limit: int) -> list[Notification]:
    """A batch's rows: the ``limit`` earliest due ones no other batch holds, with their user and
    appointment (what rendering needs), in one statement — ``FOR UPDATE OF notifications SKIP
    LOCKED``, kept until this transaction ends (the claim commits it), so batches side by side
    never contend and never take the same row."""
    return list(session.scalars(
        select(Notification).where(*_due_clause(now))
        .options(joinedload(Notification.user), joinedload(Notification.appointment))
        .order_by(Notification.scheduled_for, Notification.id).limit(limit)
        .with_for_update(of=Notification, skip_locked=True)
        .execution_options(populate_existing=True)).unique())


def claim_batch(session: Session, ids, *, now: datetime) -> dict[int, int]:
    """``claim_attempt`` for many rows in one UPDATE (the same compare-and-swap, row by row): returns
    {id: attempt number} of the rows this run took. Loaded rows are not updated in memory
    (``lock_leases`` re-reads them under lock before anything is recorded)."""
    if not ids:
        return {}
    return dict(session.execute(
        Notification.transition_where("claim", Notification.id.in_(list(ids)), Notification.sent_at.is_(None),
                                      Notification.scheduled_for <= now)
        .values(sent_at=now, attempts=Notification.attempts + 1)
        .returning(Notification.id, Notification.attempts)
        .execution_options(synchronize_session=False)).all())


def lock_leases(session: Session, claims: dict[int, int], *, claimed_at: datetime) -> dict[int, Notification]:
    """``holds_lease`` for many rows in one locking SELECT: the rows whose claim (``claims``: id ->
    attempt) still owns them, locked until the results are committed. Rows another run owns now
    are left out (their results are not recorded: ``lease-lost``)."""
    if not claims:
        return {}
    rows = session.scalars(select(Notification).where(Notification.id.in_(list(claims)))
                           .order_by(Notification.id).with_for_update()
                           .execution_options(populate_existing=True))
    return {row.id: row for row in rows if _owned(row, claims[row.id], claimed_at=claimed_at)}


def release_unused(session: Session, notification: Notification) -> None:
    """Give back a claim that never tried to send (a batch out of time): queued and due again as
    it was, and the try not counted. Only for a row whose lease this run holds (``lock_leases``)."""
    notification.transition("retry")
    notification.sent_at = None
    notification.attempts -= 1


def expire_leases(session: Session, *, now: datetime, lease, max_attempts: int) -> tuple[list[int], list[int]]:
    """The sweep's step for claims whose process died: a row still ``sending`` ``lease`` after its
    claim goes back to queued (due at once) — or, on its last attempt, to failed. Whether that
    claim's message left is unknown; a stable Message-ID marks a second email as the same one.
    Returns (requeued ids, failed ids)."""
    cutoff = now - lease
    stale = (Notification.status == "sending", Notification.sent_at < cutoff)
    failed = session.execute(
        Notification.transition_where("fail", *stale, Notification.attempts >= max_attempts)
        .values(error="lease expired: the send was interrupted, outcome unknown")
        .returning(Notification.id)).scalars().all()
    requeued = session.execute(
        Notification.transition_where("expire", *stale)
        .values(sent_at=None, error="lease expired: the send was interrupted; sending again")
        .returning(Notification.id)).scalars().all()
    return list(requeued), list(failed)


def record_sent(session: Session, notification: Notification, *, provider: str, message_id: str | None,
                status: str, subject: str | None, body: str, unconfirmed: str | None = None) -> None:
    """The sender took the message (``unconfirmed``: it was handed over but no answer came; it is
    recorded as handed off, with that note, and not retried)."""
    notification.transition("deliver" if status == "delivered" else "hand_off")
    notification.provider, notification.provider_message_id = provider, message_id
    if notification.template == "phone_code" and provider != "outbox":
        # A verification code is a secret: the log keeps that one was sent, not the code.
        code = (notification.context or {}).get("code")
        body = body.replace(code, "••••••") if code else body
        notification.context = {k: v for k, v in (notification.context or {}).items() if k != "code"}
    notification.subject, notification.body, notification.error = subject, body, unconfirmed
    if notification.status == "delivered":
        notification.delivered_at = notification.sent_at


def record_failure(session: Session, notification: Notification, *, error: str, permanent: bool,
                   max_attempts: int, retry_at: datetime | None = None) -> bool:
    """Back to queued for a retry (True), due at ``retry_at`` (its backoff), or failed for good (False)."""
    notification.error = error[:500]
    if permanent or notification.attempts >= max_attempts:
        notification.transition("fail")
        return False
    notification.transition("retry")
    notification.sent_at = None                 # released: the retry may claim it again
    if retry_at is not None:
        notification.scheduled_for = retry_at   # not due (for the sweeper either) before its backoff
    return True


def cancel_pending(session: Session, appointment_id: int, *, templates: tuple[str, ...] = (REMINDER,)) -> int:
    result = session.execute(
        Notification.transition_where("cancel", Notification.appointment_id == appointment_id,
                                      Notification.template.in_(templates), Notification.sent_at.is_(None)))
    return result.rowcount


def schedule_reminders(session: Session, appointment: Appointment, *, offsets, now: datetime) -> list[Notification]:
    """Reminders at each offset before the start (those still in the future)."""
    made = []
    user = appointment.patient.user
    for offset in offsets:
        due = appointment.starts_at - offset
        if due <= now:
            continue
        made.append(queue(session, dedupe_key=f"reminder:{int(offset.total_seconds())}:{appointment.id}",
                          template=REMINDER, user=user, appointment=appointment, scheduled_for=due,
                          context={"offset_seconds": int(offset.total_seconds())}))
    return made


def move_reminders(session: Session, appointment: Appointment, *, offsets, now: datetime) -> int:
    """A reschedule moves the unsent reminders (and makes ones that had already gone, anew)."""
    moved = 0
    for offset in offsets:
        key = f"reminder:{int(offset.total_seconds())}:{appointment.id}"
        row = session.scalar(select(Notification).where(Notification.dedupe_key == key).with_for_update())
        due = appointment.starts_at - offset
        if row is None:
            if due > now:
                schedule_reminders(session, appointment, offsets=[offset], now=now)
                moved += 1
            continue
        if row.status in ("queued", "canceled") and row.sent_at is None:
            if due <= now:
                if row.can("cancel"):
                    row.transition("cancel")
                continue
            if row.can("requeue"):
                row.transition("requeue")
            row.scheduled_for = due
            _enqueue_after_commit(session, row)
            moved += 1
    return moved


def due(session: Session, *, now: datetime, limit: int = 500) -> list[tuple[int, int, datetime]]:
    """What the sweeper re-enqueues: due, queued, not claimed — (id, attempts, scheduled_for), which
    name the row's send job."""
    return [tuple(row) for row in session.execute(
        select(Notification.id, Notification.attempts, Notification.scheduled_for).where(*_due_clause(now))
        .order_by(Notification.scheduled_for, Notification.id).limit(limit))]


def _due_clause(now: datetime):
    return (Notification.status == "queued", Notification.sent_at.is_(None), Notification.scheduled_for <= now)


def log_for_appointment(session: Session, appointment_id: int) -> list[Notification]:
    return list(session.scalars(select(Notification).where(Notification.appointment_id == appointment_id)
                                .order_by(Notification.scheduled_for, Notification.id)))


# -- messages that bring a patient back to checkout (decline, released hold) ---------------------

COMEBACK_TEMPLATES = ("payment_declined", "hold_released")


def moot_reason(session: Session, notification: Notification) -> str | None:
    """Why a message back to checkout should no longer go: the appointment is booked (or its
    payment succeeded and the booking is on its way), or a later decline message replaces it."""
    if notification.template not in COMEBACK_TEMPLATES or notification.appointment_id is None:
        return None
    appointment = session.get(Appointment, notification.appointment_id)
    if appointment is None:
        return None
    if appointment.status in BOOKED:
        return "booked"
    paid = session.scalar(select(PaymentAttempt.id).join(Charge, Charge.id == PaymentAttempt.charge_id).where(
        Charge.appointment_id == appointment.id, PaymentAttempt.status.in_(("requires_capture", "succeeded")))
        .limit(1))
    if paid is not None and appointment.status == "held":
        return "paid"
    if notification.template == "payment_declined":
        later = session.scalar(select(Notification.id).where(
            Notification.appointment_id == appointment.id, Notification.template == "payment_declined",
            Notification.id > notification.id, Notification.status != "canceled").limit(1))
        if later is not None:
            return "superseded"
    return None


def cancel_if_moot(session: Session, notification: Notification, *, now: datetime) -> str | None:
    """At send time: cancel a message back to checkout that has nothing left to do (audited).
    Returns the reason when it was canceled, None when it should go."""
    reason = moot_reason(session, notification)
    if reason is None:
        return None
    canceled = session.execute(
        Notification.transition_where("cancel", Notification.id == notification.id, Notification.sent_at.is_(None))
        .values(error=f"not sent: {reason}").returning(Notification.id)).first()
    if canceled is None:
        return None
    audit.record(session, actor=Actor.system("notifications"), action="notification.canceled",
                 appointment_id=notification.appointment_id, subject_user_id=notification.user_id, at=now,
                 details={"notification_id": notification.id, "template": notification.template,
                          "reason": reason})
    return reason


# -- rendering ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


def local_time(dt: datetime, tz: str, language: str | None = None) -> str:
    """The time in the recipient's zone, in their language ("Sunday, November 29 at 2:10 PM EST";
    "domingo, 29 de noviembre, 2:10 p.m. EST")."""
    return format_local(dt.astimezone(ZoneInfo(tz)), "%A, %B %-d at %-I:%M %p %Z", language)


def message_context(notification: Notification, *, clinic, base_url: str, language: str | None = None) -> dict:
    """Everything a template may use: deliberately small (no names, no clinical words). ``language``:
    the recipient's (app.i18n.message_locale), for the date and time."""
    user = notification.user
    appointment = notification.appointment
    context = {
        "clinic_name": clinic.name, "clinic_phone": clinic.phone or "", "base_url": base_url.rstrip("/"),
        "when": local_time(appointment.starts_at, user.timezone, language) if appointment else None,
        "appointment_url": f"{base_url.rstrip('/')}/appointments/{appointment.id}" if appointment else None,
        "modality": appointment.modality if appointment else None,
    }
    context.update({k: v for k, v in (notification.context or {}).items() if k in (
        "link", "code", "offset_seconds", "hours", "amount", "by")})
    slot_at = (notification.context or {}).get("slot_at")     # a waitlist offer: the freed time, no appointment
    if slot_at and context["when"] is None:
        context["when"] = local_time(datetime.fromisoformat(slot_at), user.timezone, language)
    return context
