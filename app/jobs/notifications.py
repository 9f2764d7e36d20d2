"""Notification jobs: send one message (idempotent by compare-and-swap), the
listeners' work after a booking change, and the sweeper's step.

``app/jobs/subscriptions.py`` enqueues these after the commit that made the
change; each opens its own unit of work."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app, render_template
from jinja2 import TemplateNotFound
from sqlalchemy import select

from app.integrations.messaging import OutboxSender, OutgoingMessage, SendError
from app.jobs import enqueue, enqueue_at, enqueue_in, job_session
from app.jobs import now as _now
from app.models import Appointment, Notification
from app.services import notifications
from app.services.clinic import current_clinic

log = logging.getLogger(__name__)


def _settings():
    return current_app.config["SETTINGS"]


def sender_for(channel: str):
    """Twilio / SMTP when configured, the dev outbox otherwise (cached per app)."""
    app = current_app
    senders = app.extensions.setdefault("senders", {})
    if channel not in senders:
        s = _settings()
        if channel == "sms" and s.TWILIO_ACCOUNT_SID and s.TWILIO_AUTH_TOKEN and s.TWILIO_FROM_NUMBER:
            from app.integrations.twilio_sms import TwilioSms

            senders[channel] = TwilioSms(account_sid=s.TWILIO_ACCOUNT_SID, auth_token=s.TWILIO_AUTH_TOKEN,
                                         from_number=s.TWILIO_FROM_NUMBER, api_base=s.TWILIO_API_BASE,
                                         status_callback=s.PUBLIC_BASE_URL.rstrip("/") + "/twilio/status")
        elif channel == "email" and s.SMTP_HOST:
            from app.integrations.smtp_email import SmtpEmail

            senders[channel] = SmtpEmail(host=s.SMTP_HOST, port=s.SMTP_PORT, from_addr=s.SMTP_FROM,
                                         username=s.SMTP_USERNAME, password=s.SMTP_PASSWORD,
                                         starttls=s.SMTP_STARTTLS)
        else:
            senders[channel] = OutboxSender()
    return senders[channel]


def render(session, notification: Notification) -> OutgoingMessage:
    """The message as it will be sent, from messages/<template>.{txt,subject.txt,html}."""
    context = notifications.message_context(notification, clinic=current_clinic(session),
                                            base_url=_settings().PUBLIC_BASE_URL)
    name = notification.template
    text = render_template(f"messages/{name}.txt", **context).strip()
    subject = html = None
    attachments = ()
    if notification.channel == "email":
        subject = render_template(f"messages/{name}.subject.txt", **context).strip()
        try:
            html = render_template(f"messages/{name}.html", **context)
        except TemplateNotFound:
            html = None
        if name == "booking_confirmed" and notification.appointment is not None:
            from app.services.calendar import appointment_ics

            ics = appointment_ics(notification.appointment, clinic=current_clinic(session),
                                  url=context["appointment_url"])
            attachments = (("appointment.ics", "text/calendar", ics),)
    return OutgoingMessage(channel=notification.channel, to=notification.recipient, text=text, subject=subject,
                           html=html, attachments=attachments, reference=str(notification.id))


def schedule_send(notification_id: int, when: datetime) -> None:
    """After-commit hook of notifications.queue."""
    job_id = f"notify-{notification_id}-{int(when.timestamp())}"
    if when <= _now():
        enqueue(send_notification, notification_id, job_id=job_id)
    else:
        enqueue_at(when, send_notification, notification_id, job_id=job_id)


def send_notification(notification_id: int) -> str:
    with job_session() as session:
        notification = session.get(Notification, notification_id)
        if notification is None or notification.status != "queued":
            return "not-queued"
        now = _now()
        if notification.scheduled_for > now + timedelta(seconds=1):
            return "not-due"          # a stale job from before a reschedule; the new one is queued
        if notifications.cancel_if_moot(session, notification, now=now):
            session.commit()
            return "canceled"         # e.g. a decline message, but the patient has since booked
        message = render(session, notification)
        if not notifications.claim(session, notification_id, now=now):
            session.rollback()
            return "claimed-elsewhere"
        session.commit()
        sender = sender_for(notification.channel)
        try:
            result = sender.send(message)
        except SendError as error:
            session.refresh(notification)
            delays = _settings().SEND_RETRY_DELAYS
            retry = notifications.record_failure(session, notification, error=str(error),
                                                 permanent=error.permanent, max_attempts=len(delays) + 1)
            session.commit()
            if retry:
                enqueue_in(timedelta(seconds=delays[min(notification.attempts - 1, len(delays) - 1)]),
                           send_notification, notification_id)
                return "retry"
            return "failed"
        session.refresh(notification)
        notifications.record_sent(session, notification, provider=result.provider,
                                  message_id=result.provider_message_id, status=result.status,
                                  subject=message.subject, body=message.text)
        session.commit()
        return notification.status


def sweep_notifications() -> int:
    """Re-enqueue what is due and unsent (Redis may have lost it); the CAS keeps it to one send."""
    with job_session() as session:
        ids = notifications.due_ids(session, now=_now())
        session.rollback()
        for notification_id in ids:
            enqueue(send_notification, notification_id)
    return len(ids)


# -- after booking changes (enqueued by app/jobs/subscriptions.py) ------------------------------------

def booking_confirmed(appointment_id: int) -> None:
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "confirmed":
            return
        user = appointment.patient.user
        notifications.queue(session, dedupe_key=f"booking_confirmed:{appointment.id}",
                            template="booking_confirmed", user=user, appointment=appointment,
                            scheduled_for=_now(), prefer="email")
        notifications.schedule_reminders(session, appointment, offsets=_settings().REMINDER_OFFSETS, now=_now())
        session.commit()


def booking_canceled(appointment_id: int) -> None:
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "canceled":
            return
        notifications.cancel_pending(session, appointment.id)
        by = "you" if appointment.canceled_by_id == appointment.patient.user_id else "the clinic"
        notifications.queue(session, dedupe_key=f"booking_canceled:{appointment.id}", template="booking_canceled",
                            user=appointment.patient.user, appointment=appointment, scheduled_for=_now(),
                            context={"by": by})
        session.commit()


def booking_rescheduled(appointment_id: int) -> None:
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "confirmed":
            return
        notifications.move_reminders(session, appointment, offsets=_settings().REMINDER_OFFSETS, now=_now())
        session.commit()


def retry_link(session, appointment) -> str:
    """A one-click link back to checkout for this appointment's patient."""
    from app.services import links

    settings = _settings()
    token = links.issue(session, secret=settings.SECRET_KEY, purpose="retry_checkout",
                        user=appointment.patient.user, appointment=appointment, now=_now(),
                        ttl=settings.RETRY_LINK_TTL, not_after=appointment.starts_at - settings.RELEASE_BEFORE_START)
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/r/{token}"


def _bookable_again(appointment) -> bool:
    return appointment.starts_at - _settings().RELEASE_BEFORE_START > _now() + timedelta(minutes=1)


def payment_declined(appointment_id: int, failure_key: str) -> None:
    """A declined payment: tell the patient, with a one-click link back to checkout — after
    DECLINE_MESSAGE_GRACE, and only if by then they have not paid with another card."""
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status not in ("held", "released") or not _bookable_again(appointment):
            return
        key = f"payment_declined:{appointment.id}:{failure_key}"
        if session.scalar(select(Notification.id).where(Notification.dedupe_key == key)) is None:
            notifications.queue(session, dedupe_key=key, template="payment_declined",
                                user=appointment.patient.user, appointment=appointment,
                                scheduled_for=_now() + _settings().DECLINE_MESSAGE_GRACE,
                                context={"link": retry_link(session, appointment)})
        session.commit()


def hold_released(appointment_id: int, reason: str | None) -> None:
    """A hold that expired during checkout: tell the patient, with a one-click link to book it again."""
    from app.models import Charge

    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "released" or reason != "hold expired":
            return
        started_paying = session.scalar(select(Charge.id).where(Charge.appointment_id == appointment.id))
        if started_paying is None or not _bookable_again(appointment):
            return
        key = f"hold_released:{appointment.id}"
        if session.scalar(select(Notification.id).where(Notification.dedupe_key == key)) is None:
            notifications.queue(session, dedupe_key=key, template="hold_released", user=appointment.patient.user,
                                appointment=appointment, scheduled_for=_now(),
                                context={"link": retry_link(session, appointment)})
        session.commit()
