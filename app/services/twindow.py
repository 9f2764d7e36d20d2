"""T-window handling: a payment failing shortly before the visit.

A confirmation that fails while the appointment is still held and starts
within T_WINDOW of now raises a ProviderAlert (one per appointment) and sets
the release deadline, start - RELEASE_BEFORE_START, which is also the hold's
expiry: the hold is kept until then so the patient can still pay, and the
hold-expiry job (or the sweeper) releases the slot at the deadline if they do
not. The alert then says what became of it: ``recovered`` (the payment
succeeded and the booking is confirmed) or ``released`` (the slot is free).
The provider is told at each step, with the minimum necessary (clinic, time,
a portal link; never the patient's name or anything clinical).

No function here commits; each writes its audit row in the caller's
transaction and queues its messages (sent after the commit).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.models import Appointment, Charge, PaymentAttempt, PaymentFailure, ProviderAlert
from app.models.state import Ignored
from app.services import audit, notifications
from app.services.audit import Actor
from app.services.unit_of_work import request

ALERT_TEMPLATE = "provider_payment_alert"
RECOVERED_TEMPLATE = "provider_payment_recovered"
RELEASED_TEMPLATE = "slot_released_provider"
PATIENT_RELEASED_TEMPLATE = "slot_released_patient"


@dataclass(frozen=True)
class TWindow:
    window: timedelta                  # T_WINDOW
    release_before_start: timedelta    # RELEASE_BEFORE_START
    base_url: str                      # links in the provider's messages

    @classmethod
    def from_settings(cls, settings) -> "TWindow":
        return cls(settings.T_WINDOW, settings.RELEASE_BEFORE_START, settings.PUBLIC_BASE_URL)

    def deadline(self, appointment: Appointment) -> datetime:
        return appointment.starts_at - self.release_before_start

    def inside(self, appointment: Appointment, now: datetime) -> bool:
        """The start is closer than T_WINDOW (and has not passed)."""
        return now < appointment.starts_at and appointment.starts_at - now < self.window


def _audit(session: Session, alert: ProviderAlert, appointment: Appointment, *, action: str, actor: Actor,
           now: datetime, reason: str | None = None, details: dict | None = None) -> None:
    audit.record(session, actor=actor, action=action, reason=reason, patient_id=appointment.patient_id,
                 appointment_id=appointment.id,
                 details={"alert_id": alert.id, "provider_id": alert.provider_id,
                          "release_deadline": alert.release_deadline.isoformat(), "at": now.isoformat(),
                          **(details or {})})


def _day_link(policy: TWindow, appointment: Appointment) -> str:
    on = appointment.starts_at.astimezone(ZoneInfo(appointment.provider.timezone)).date().isoformat()
    return f"{policy.base_url.rstrip('/')}/staff/day?date={on}"


def _deadline_text(appointment: Appointment, deadline: datetime) -> str:
    return deadline.astimezone(ZoneInfo(appointment.provider.user.timezone)).strftime("%-I:%M %p %Z")


def _tell_provider(session: Session, alert: ProviderAlert, appointment: Appointment, *, template: str,
                   policy: TWindow, now: datetime) -> None:
    user = appointment.provider.user
    context = {"link": _day_link(policy, appointment)}
    if template == ALERT_TEMPLATE:
        context["by"] = _deadline_text(appointment, alert.release_deadline)
    # Time-critical for the provider: SMS to a verified number, else email, for every alert message.
    notifications.queue(session, dedupe_key=f"{template}:{alert.id}", template=template, user=user,
                        appointment=appointment, scheduled_for=now, context=context,
                        address=notifications.address_for(session, user, prefer="sms"))


def alert_for(session: Session, appointment_id: int, *, lock: bool = False) -> ProviderAlert | None:
    query = select(ProviderAlert).where(ProviderAlert.appointment_id == appointment_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def payment_failed(session: Session, appointment: Appointment, *, now: datetime, policy: TWindow,
                   actor: Actor, failure: str | None = None) -> ProviderAlert | None:
    """A confirmation failed. Inside the T-window, for a held appointment: raise the alert (once),
    hold the slot until the release deadline, tell the provider. The caller holds the appointment's lock."""
    if appointment.status != "held" or not policy.inside(appointment, now):
        return None
    deadline = policy.deadline(appointment)
    if deadline <= now:
        return None                        # the hold ends now anyway; the expiry job releases it
    existing = alert_for(session, appointment.id)
    if existing is not None:
        return None                        # once per appointment
    inserted = session.execute(
        pg_insert(ProviderAlert).values(appointment_id=appointment.id, provider_id=appointment.provider_id,
                                        kind="payment_failed_in_window", status="open",
                                        release_deadline=deadline, raised_at=now)
        .on_conflict_do_nothing(index_elements=["appointment_id"]).returning(ProviderAlert.id)).first()
    if inserted is None:
        return None                        # raised by a concurrent run
    alert = session.get(ProviderAlert, inserted[0])
    _audit(session, alert, appointment, action="provider_alert.raised", actor=actor, now=now,
           reason="payment failed inside the T-window",
           details={"failure": failure, "starts_at": appointment.starts_at.isoformat(),
                    "t_window_seconds": int(policy.window.total_seconds())})
    _hold_until_deadline(session, appointment, deadline, actor=actor, now=now)
    _tell_provider(session, alert, appointment, template=ALERT_TEMPLATE, policy=policy, now=now)
    return alert


def _hold_until_deadline(session: Session, appointment: Appointment, deadline: datetime, *, actor: Actor,
                         now: datetime) -> None:
    """The release deadline is the hold's expiry: the patient may pay until then, not after."""
    if appointment.hold_expires_at == deadline:
        return
    old = appointment.hold_expires_at
    appointment.hold_expires_at = deadline
    audit.record(session, actor=actor, action="hold.extended", patient_id=appointment.patient_id,
                 appointment_id=appointment.id, reason="payment failed inside the T-window: held until the "
                                                       "release deadline",
                 details={"from": old.isoformat() if old else None, "to": deadline.isoformat(),
                          "at": now.isoformat()})
    request(session, "expire_hold", appointment.id, deadline)


def recovered(session: Session, appointment: Appointment, *, now: datetime, policy: TWindow,
              actor: Actor) -> ProviderAlert | None:
    """The booking was confirmed: an open (or already released) alert is recovered; the provider is told."""
    alert = alert_for(session, appointment.id, lock=True)
    if alert is None or appointment.status not in ("confirmed", "checked_in", "completed"):
        return None
    was = alert.status
    try:
        alert.transition("recover", now=now)
    except Ignored:
        return None                        # recovered already
    session.flush()
    _audit(session, alert, appointment, action="provider_alert.recovered", actor=actor, now=now,
           reason="payment received; the booking is confirmed", details={"from": was})
    _tell_provider(session, alert, appointment, template=RECOVERED_TEMPLATE, policy=policy, now=now)
    return alert


def released(session: Session, appointment: Appointment, *, now: datetime, policy: TWindow, actor: Actor,
             reason: str | None) -> ProviderAlert | None:
    """The hold was released (deadline passed) or canceled: an open alert is released; the provider is told."""
    alert = alert_for(session, appointment.id, lock=True)
    # Only an open alert is released: a recovered one keeps saying the payment came through
    # (a later cancel of the booking is the cancellation's business).
    if alert is None or not alert.can("release") or appointment.status not in ("released", "canceled"):
        return None
    alert.transition("release", now=now)
    session.flush()
    _audit(session, alert, appointment, action="provider_alert.released", actor=actor, now=now,
           reason=f"slot released: {reason or appointment.status}")
    _tell_provider(session, alert, appointment, template=RELEASED_TEMPLATE, policy=policy, now=now)
    if reason == "hold expired":
        _tell_patient_released(session, appointment, now=now)
    return alert


def _tell_patient_released(session: Session, appointment: Appointment, *, now: datetime) -> None:
    """Released at the deadline: the time is too close to book again, so the patient's usual
    "book it again" message does not go; this one tells them the time is gone."""
    from app.models import Notification

    if session.scalar(select(Notification.id).where(
            Notification.dedupe_key == f"hold_released:{appointment.id}")) is not None:
        return                             # already told by the usual message
    user = appointment.patient.user
    notifications.queue(session, dedupe_key=f"{PATIENT_RELEASED_TEMPLATE}:{appointment.id}",
                        template=PATIENT_RELEASED_TEMPLATE, user=user, appointment=appointment,
                        scheduled_for=now, address=notifications.address_for(session, user, prefer="sms"))


# -- the sweeper's view: the database says what is due -------------------------------------------

def missed_alerts(session: Session, *, now: datetime, policy: TWindow, limit: int = 200) -> list[int]:
    """Held appointments inside the window with a failed confirmation and no alert (a lost job)."""
    return list(session.scalars(
        select(Appointment.id).join(Charge, Charge.appointment_id == Appointment.id)
        .join(PaymentAttempt, PaymentAttempt.charge_id == Charge.id)
        .join(PaymentFailure, PaymentFailure.attempt_id == PaymentAttempt.id)
        .outerjoin(ProviderAlert, ProviderAlert.appointment_id == Appointment.id)
        .where(Appointment.status == "held", ProviderAlert.id.is_(None), Appointment.starts_at > now,
               Appointment.starts_at < now + policy.window)
        .distinct().limit(limit)))


def unresolved_alerts(session: Session, *, limit: int = 200) -> list[int]:
    """Alerts the appointment has moved past (a lost confirmation or release job): their appointment ids."""
    booked = Appointment.status.in_(("confirmed", "checked_in", "completed"))
    return list(session.scalars(
        select(ProviderAlert.appointment_id).join(Appointment, Appointment.id == ProviderAlert.appointment_id)
        .where(or_((ProviderAlert.status == "open") & (Appointment.status != "held"),
                   (ProviderAlert.status == "released") & booked))
        .limit(limit)))


def settle(session: Session, appointment: Appointment, *, now: datetime, policy: TWindow, actor: Actor,
           reason: str | None = None) -> ProviderAlert | None:
    """Bring the appointment's alert in line with the appointment's state (recovered or released)."""
    if appointment.status in ("confirmed", "checked_in", "completed"):
        return recovered(session, appointment, now=now, policy=policy, actor=actor)
    if appointment.status in ("released", "canceled"):
        return released(session, appointment, now=now, policy=policy, actor=actor, reason=reason)
    return None


# -- the provider's day view ---------------------------------------------------------------------

@dataclass(frozen=True)
class AlertView:
    alert: ProviderAlert
    appointment: Appointment


def alerts_for_view(session: Session, provider_id: int, *, first: date, days: int, timezone: str
                    ) -> list[AlertView]:
    """Open alerts (whatever their day) and the resolved ones of the days shown, newest first."""
    tz = ZoneInfo(timezone)
    start = datetime.combine(first, datetime.min.time(), tz)
    end = datetime.combine(first + timedelta(days=days), datetime.min.time(), tz)
    rows = session.execute(
        select(ProviderAlert, Appointment).join(Appointment, Appointment.id == ProviderAlert.appointment_id)
        .where(ProviderAlert.provider_id == provider_id,
               or_(ProviderAlert.status == "open",
                   (Appointment.starts_at >= start) & (Appointment.starts_at < end)))
        .order_by((ProviderAlert.status != "open"), Appointment.starts_at)).all()
    return [AlertView(alert, appointment) for alert, appointment in rows]
