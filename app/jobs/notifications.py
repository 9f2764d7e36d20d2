"""Notification jobs: send one message (idempotent by compare-and-swap), the
listeners' work after a booking change, and the sweeper's step.

``app/jobs/subscriptions.py`` enqueues these after the commit that made the
change; each opens its own unit of work.

Every send job of a row is named by the row's state — ``send_job_id``:
``<namespace>-notify-<id>-<attempts>-<due epoch>`` — and ``enqueue_once``
does not add a job whose id is already waiting (queued, scheduled or running),
so the after-commit hook, the retry and the sweeper, however often they run,
leave at most one job per row and try."""
from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import force_locale
from jinja2 import TemplateNotFound
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus
from rq.timeouts import BaseTimeoutException
from sqlalchemy import select

from app.i18n import message_locale
from app.integrations.messaging import (Connections, OutboxSender, OutgoingMessage, SendError,
                                        SendOutcomeUnknown)
from app.jobs import enqueue, enqueue_at, get_queue, job_session
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
                                         starttls=s.SMTP_STARTTLS, timeout=s.SMTP_TIMEOUT,
                                         data_timeout=s.SMTP_DATA_TIMEOUT)
        else:
            senders[channel] = OutboxSender()
    return senders[channel]


class Renderer:
    """Messages as they will be sent, from messages/<template>.{txt,subject.txt,html}, rendered with
    the app's Jinja environment and ``message_context`` alone (a message has no use for a page's
    context processors, one of which reads the clinic each time). Templates are looked up and the
    clinic read once per renderer: a batch uses one for all its rows."""

    def __init__(self, session):
        self.session = session
        self.env = current_app.jinja_env
        self.base_url = _settings().PUBLIC_BASE_URL
        self._clinic = None
        self._templates: dict[str, object] = {}

    @property
    def clinic(self):
        if self._clinic is None:
            self._clinic = current_clinic(self.session)
        return self._clinic

    def _render(self, name: str, context: dict, *, optional: bool = False) -> str | None:
        if name not in self._templates:
            try:
                self._templates[name] = self.env.get_template(name)
            except TemplateNotFound:
                if not optional:
                    raise
                self._templates[name] = None
        template = self._templates[name]
        return template.render(context) if template is not None else None

    def __call__(self, notification: Notification) -> OutgoingMessage:
        # In the recipient's language (their profile's; English without one): the templates' _()
        # and the date in ``when``. Jobs run outside requests, so the locale is forced here.
        language = message_locale(notification.user)
        with force_locale(language):
            return self._message(notification, language)

    def _message(self, notification: Notification, language: str) -> OutgoingMessage:
        context = notifications.message_context(notification, clinic=self.clinic, base_url=self.base_url,
                                                language=language)
        name = notification.template
        text = self._render(f"messages/{name}.txt", context).strip()
        subject = html = None
        attachments = ()
        if notification.channel == "email":
            subject = self._render(f"messages/{name}.subject.txt", context).strip()
            html = self._render(f"messages/{name}.html", context, optional=True)
            if name == "booking_confirmed" and notification.appointment is not None:
                from app.services.calendar import appointment_ics

                ics = appointment_ics(notification.appointment, clinic=self.clinic, url=context["appointment_url"])
                attachments = (("appointment.ics", "text/calendar", ics),)
        return OutgoingMessage(channel=notification.channel, to=notification.recipient, text=text,
                               subject=subject, html=html, attachments=attachments,
                               reference=str(notification.id), key=message_key(notification))


def render(session, notification: Notification) -> OutgoingMessage:
    """One message as it will be sent."""
    return Renderer(session)(notification)


def message_key(notification: Notification) -> str:
    """The message's identity across its tries (the email's Message-ID): the row's id and a digest of
    what makes it unique beyond one database (no PHI: ids and a time)."""
    created = notification.created_at.isoformat() if notification.created_at else ""
    digest = hashlib.sha256(f"{notification.id}|{notification.dedupe_key}|{created}".encode()).hexdigest()[:16]
    return f"notification.{notification.id}.{digest}"


# -- enqueueing: one job per row and try -----------------------------------------------------------------

# Longer than a send can take (SMTP: connect and commands at SMTP_TIMEOUT each, then SMTP_DATA_TIMEOUT),
# shorter than SEND_LEASE: a lease runs out only once the job that held it is surely gone.
SEND_JOB_TIMEOUT = 300
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def send_job_id(notification_id: int, attempts: int, when: datetime) -> str:
    """The deterministic RQ job id of a row's next try: named by its id, the tries it has had, and
    when it is due (a reschedule or a backoff is a new job; a repeat of the same one is not)."""
    namespace = re.sub(r"[^A-Za-z0-9_-]", "_", _settings().REDIS_NAMESPACE)
    return f"{namespace}-notify-{notification_id}-{attempts}-{int(when.timestamp())}"


def _still_waiting(queue, job) -> bool:
    """The job will run: its status says it waits and it is where that status says (a queued job in
    the queue, a scheduled one in the scheduler's registry) — not a leftover hash."""
    status = job.get_status(refresh=False)
    if status == JobStatus.QUEUED:
        return job.id in queue.get_job_ids()
    if status == JobStatus.SCHEDULED:
        return job.id in queue.scheduled_job_registry
    return status in WAITING


def enqueue_once(fn, *args, job_id: str, when: datetime | None = None, **kwargs) -> bool:
    """Enqueue ``fn(*args)`` as ``job_id`` — at ``when`` if that is still ahead — unless a job with
    that id is already waiting. A waiting job scheduled for later is handed to the queue when
    ``when`` says it is due (the scheduler may lag; the sweep must not wait on it). A finished or
    failed job of that id is replaced. True when this call queued or scheduled something."""
    queue = get_queue()
    due_now = when is None or when <= _now()
    existing = queue.fetch_job(job_id)
    if existing is not None:
        if _still_waiting(queue, existing):
            if due_now and existing.get_status(refresh=False) == JobStatus.SCHEDULED \
                    and queue.connection.zrem(queue.scheduled_job_registry.key, job_id):
                queue.enqueue_job(existing)            # ZREM won: we move it, the scheduler will not
                return True
            return False
        existing.delete()
    kwargs.setdefault("job_timeout", SEND_JOB_TIMEOUT)
    try:
        if due_now:
            enqueue(fn, *args, job_id=job_id, unique=True, **kwargs)
        else:
            enqueue_at(when, fn, *args, job_id=job_id, unique=True, **kwargs)
    except DuplicateJobError:
        return False                                   # another enqueuer got there first: one job
    return True


def batch_job_id(tag: str, chain: int) -> str:
    namespace = re.sub(r"[^A-Za-z0-9_-]", "_", _settings().REDIS_NAMESPACE)
    return f"{namespace}-notify-batch-{tag}-{chain}"


def schedule_send(notification_id: int, when: datetime, attempts: int = 0, batch: bool = False) -> None:
    """After-commit hook of notifications.queue (and of a reschedule). A row due later with
    ``batch`` (reminders) shares one job with every row due at that second."""
    if batch and when > _now():
        tag = str(int(when.timestamp()))
        enqueue_once(send_due_batch, tag, 0, job_id=batch_job_id(tag, 0), when=when)
        return
    enqueue_once(send_notification, notification_id, job_id=send_job_id(notification_id, attempts, when), when=when)


# -- sending ------------------------------------------------------------------------------------------------

# A batch stops sending at this point of its job timeout; what is left (claimed, never tried) is given
# back and the next batch takes it. Past it, one send may still run its course (SMTP: connect and
# commands at SMTP_TIMEOUT each, then SMTP_DATA_TIMEOUT) within SEND_JOB_TIMEOUT.
SEND_DEADLINE = SEND_JOB_TIMEOUT / 3


def send_due_batch(tag: str = "sweep", chain: int = 0) -> int:
    """Send up to SEND_BATCH_SIZE due rows: taken in one statement (SKIP LOCKED, so batches side by
    side never contend), claimed in one compare-and-swap, sent one after another over one
    connection per sender, their results recorded under the lease in one transaction. A full batch
    queues the next one first (a free worker takes it meanwhile). Returns how many rows it took."""
    size = _settings().SEND_BATCH_SIZE
    deadline = time.monotonic() + SEND_DEADLINE
    with job_session() as session:
        now = _now()
        rows = notifications.lock_due_batch(session, now=now, limit=size)
        if not rows:
            session.rollback()
            return 0
        if len(rows) >= size:               # maybe more are due: the next batch skips the rows locked here
            enqueue_once(send_due_batch, tag, chain + 1, job_id=batch_job_id(tag, chain + 1))
        sendable = [row for row in rows if not (row.template in notifications.COMEBACK_TEMPLATES
                                                and notifications.cancel_if_moot(session, row, now=now))]
        outcomes = _deliver(session, sendable, now=now, deadline=deadline)
        if "released" in outcomes.values():  # out of time: the rest go in the next batch
            enqueue_once(send_due_batch, tag, chain + 1, job_id=batch_job_id(tag, chain + 1))
    return len(rows)


def send_notification(notification_id: int) -> str:
    with job_session() as session:
        return _send(session, notification_id)


def _send(session, notification_id: int) -> str:
    """One row: check it is still to go, then render, claim (CAS), commit, send, record under the lease."""
    notification = session.get(Notification, notification_id)
    if notification is None or notification.status != "queued":
        return "not-queued"
    now = _now()
    if notification.scheduled_for > now + timedelta(seconds=1):
        return "not-due"          # a stale job (before a reschedule or a backoff); the row's own job waits
    if notifications.cancel_if_moot(session, notification, now=now):
        session.commit()
        return "canceled"         # e.g. a decline message, but the patient has since booked
    return _deliver(session, [notification], now=now, strict=True)[notification_id]


def _deliver(session, rows: list[Notification], *, now: datetime, deadline: float | None = None,
             strict: bool = False) -> dict[int, str]:
    """Rows to send (loaded, queued, due): render each, claim them all (one CAS), commit; send each
    — side effects only from that committed claim, over one connection per sender; then, in one
    transaction, record each result the claim still holds the lease for, commit, and queue the
    retries. ``strict`` (one row, its own job): a render or sender bug raises, for RQ to see;
    otherwise it is logged and concerns that row alone (a render failure is a failed try, a sender
    bug leaves the row to its lease). Returns each row's outcome: its status once recorded, or
    retry, failed, claimed-elsewhere, lease-lost, released (``deadline`` passed before its turn: the
    claim given back unused), error."""
    outcomes: dict[int, str] = {}
    renderer = Renderer(session)
    messages: dict[int, OutgoingMessage | None] = {}
    for row in rows:
        try:
            messages[row.id] = renderer(row)
        except Exception as error:
            if strict or isinstance(error, BaseTimeoutException):
                raise
            # Claimed all the same and recorded as a failed try (backoff, then failed), so a row that
            # cannot be rendered is not taken again by every batch.
            log.exception("notification %s: could not be rendered", row.id)
            messages[row.id] = None
    claims = notifications.claim_batch(session, messages, now=now)
    session.commit()                        # the claims (and any cancellation) before anything is sent
    for notification_id in messages.keys() - claims.keys():
        outcomes[notification_id] = "claimed-elsewhere"
    if not claims:
        return outcomes

    by_id = {row.id: row for row in rows}
    results: dict[int, tuple] = {}          # id -> (kind, result or error, sender)
    with Connections() as connections:
        for notification_id in claims:
            if deadline is not None and time.monotonic() > deadline:
                results[notification_id] = ("unused", None, None)
                continue
            sender = sender_for(by_id[notification_id].channel)
            if messages[notification_id] is None:
                results[notification_id] = ("failed", SendError("the message could not be rendered"), sender)
                continue
            try:
                results[notification_id] = ("sent", connections.send(sender, messages[notification_id]), sender)
            except SendOutcomeUnknown as error:
                results[notification_id] = ("unknown", error, sender)
            except SendError as error:
                results[notification_id] = ("failed", error, sender)
            except Exception as error:
                if strict or isinstance(error, BaseTimeoutException):     # RQ's job timeout is not ours to eat
                    raise
                log.exception("notification %s: the sender failed; left to its lease", notification_id)
                outcomes[notification_id] = "error"

    owned = notifications.lock_leases(session, {i: claims[i] for i in results}, claimed_at=now)
    delays = _settings().SEND_RETRY_DELAYS
    failed_at = _now()                      # one time for the batch's failures: their retries share batch jobs
    retries = []
    for notification_id, (kind, result, sender) in results.items():
        notification, message = owned.get(notification_id), messages[notification_id]
        if notification is None:
            log.warning("notification %s: lease lost to another run; its result is not recorded", notification_id)
            outcomes[notification_id] = "lease-lost"
        elif kind == "sent":
            notifications.record_sent(session, notification, provider=result.provider,
                                      message_id=result.provider_message_id, status=result.status,
                                      subject=message.subject, body=message.text)
            outcomes[notification_id] = notification.status
        elif kind == "unknown":
            # Handed over, no answer: it may well have gone. Recorded as handed off (with the note),
            # never retried on a guess — a definite state, and at most one copy.
            notifications.record_sent(session, notification, provider=sender.name,
                                      message_id=_email_message_id(sender, message), status="sent",
                                      subject=message.subject, body=message.text, unconfirmed=str(result))
            log.warning("notification %s: handed over, unconfirmed; not retried", notification_id)
            outcomes[notification_id] = notification.status
        elif kind == "failed":
            delay = timedelta(seconds=delays[min(notification.attempts - 1, len(delays) - 1)])
            retry = notifications.record_failure(session, notification, error=str(result),
                                                 permanent=result.permanent, max_attempts=len(delays) + 1,
                                                 retry_at=failed_at + delay)
            if retry:
                retries.append((notification_id, notification.scheduled_for, notification.attempts,
                                notification.template == notifications.REMINDER))
            outcomes[notification_id] = "retry" if retry else "failed"
        else:
            notifications.release_unused(session, notification)
            outcomes[notification_id] = "released"
    session.commit()
    for notification_id, when, attempts, batch in retries:
        schedule_send(notification_id, when, attempts, batch=batch)
    return outcomes


def _email_message_id(sender, message: OutgoingMessage) -> str | None:
    return sender.message_id(message) if hasattr(sender, "message_id") else None


def sweep_notifications() -> int:
    """The sweeper's step: take back claims whose lease ran out (their process died), then enqueue
    what is due and unsent (Redis may have lost it) under the job id its row names, so a job
    already waiting is not queued again — or, when more are due than a batch sends, one batch
    job (``send_due_batch``, itself deduplicated). The CAS keeps each row to one send."""
    settings = _settings()
    with job_session() as session:
        now = _now()
        requeued, failed = notifications.expire_leases(session, now=now, lease=settings.SEND_LEASE,
                                                       max_attempts=len(settings.SEND_RETRY_DELAYS) + 1)
        session.commit()
        for notification_id in requeued:
            log.warning("notification %s: lease expired; queued again", notification_id)
        for notification_id in failed:
            log.warning("notification %s: lease expired on its last attempt; failed", notification_id)
        rows = notifications.due(session, now=now, limit=settings.SEND_BATCH_SIZE + 1)
        session.rollback()
    if len(rows) > settings.SEND_BATCH_SIZE:
        enqueue_once(send_due_batch, "sweep", 0, job_id=batch_job_id("sweep", 0))
        return len(rows)
    for notification_id, attempts, scheduled_for in rows:
        schedule_send(notification_id, scheduled_for, attempts)
    return len(rows)


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
