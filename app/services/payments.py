"""Deposit-to-book payments: the pre-pay pattern.

The card is authorized (capture_method=manual) while the slot is held; the
booking is confirmed only once Stripe says the authorization succeeded; the
money is captured only after that confirmation has committed. A payment that
succeeds for a slot the patient no longer holds takes the slot again if it is
still free; otherwise its authorization is canceled.

Three paths race to apply a payment's result — the browser's return, the
webhook, the poll job. Each locks the attempt row, re-reads the PaymentIntent
from Stripe (never trusting what the browser says), checks amount, currency
and our ids, and applies its current status; whoever comes second finds the
work done. Every money-moving call carries the attempt's idempotency key.
No function here commits; ``SyncResult.capture_ready`` tells the caller to
capture once its commit has succeeded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.integrations.stripe_gateway import Intent, StripeGateway
from app.models import Appointment, Charge, Patient, PaymentAttempt, PaymentFailure
from app.models.payment import FINAL_STATUSES
from app.services import DomainError, audit, booking, signals
from app.services.audit import Actor

log = logging.getLogger(__name__)

# Plain words for the patient. Lost, stolen and fraud-like declines read as a
# generic decline (Stripe's guidance: never tell a fraudster why).
GENERIC = "Your card was declined. Please try another card or payment method."
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds. Please try another card.",
    "card_velocity_exceeded": "Your card has been used too many times recently. Please try another card.",
    "expired_card": "Your card has expired. Please use another card.",
    "incorrect_cvc": "The security code (CVC) is incorrect. Check it and try again.",
    "processing_error": "We could not process your card just now. Please try again.",
    "incorrect_number": "The card number is incorrect. Check it and try again.",
    "payment_intent_authentication_failure": "Your bank could not confirm it was you. Try again or use "
                                             "another card.",
    "authentication_required": "Your bank needs you to confirm this payment. Please try again.",
}


def decline_message(code: str | None, decline_code: str | None) -> str:
    if decline_code in DECLINE_MESSAGES:
        return DECLINE_MESSAGES[decline_code]
    if code in DECLINE_MESSAGES:
        return DECLINE_MESSAGES[code]
    return GENERIC


class PaymentRuleError(DomainError):
    pass


class IntentMismatch(DomainError):
    """The PaymentIntent does not belong to this attempt (amount, currency or our ids differ)."""


@dataclass(frozen=True)
class PaymentTimings:
    poll_interval: timedelta
    poll_grace: timedelta              # POLL_UNTIL = hold expiry + this
    hold_extension: timedelta
    release_before_start: timedelta

    @classmethod
    def from_settings(cls, settings) -> "PaymentTimings":
        return cls(settings.POLL_INTERVAL, settings.POLL_GRACE, settings.HOLD_EXTENSION,
                   settings.RELEASE_BEFORE_START)


@dataclass
class SyncResult:
    state: str                         # pending | requires_action | declined | confirmed | slot_lost | canceled
    message: str | None = None
    capture_ready: bool = False
    nearest: list = field(default_factory=list)


def _record(session: Session, attempt: PaymentAttempt, appointment: Appointment, *, actor: Actor,
            action: str, outcome: str = "success", reason: str | None = None, details: dict | None = None
            ) -> None:
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 patient_id=appointment.patient_id, appointment_id=appointment.id,
                 payment_attempt_id=attempt.id, stripe_object_id=attempt.stripe_payment_intent_id,
                 details={"charge_id": attempt.charge_id, "attempt": attempt.number,
                          "amount_cents": attempt.amount_cents, **(details or {})})


# -- opening an attempt ------------------------------------------------------------------------

def deposit_charge(session: Session, appointment: Appointment) -> Charge:
    """The appointment's deposit charge, made once even when two tabs open checkout at the same moment."""
    query = select(Charge).where(Charge.appointment_id == appointment.id, Charge.purpose == "deposit")
    charge = session.scalar(query)
    if charge is None:
        session.execute(pg_insert(Charge).values(
            appointment_id=appointment.id, purpose="deposit", amount_cents=appointment.price_cents,
            currency="usd", status="pending", amount_captured_cents=0, amount_refunded_cents=0)
            .on_conflict_do_nothing(constraint="uq_charges_appointment_purpose"))
        charge = session.scalar(query)
    return charge


def open_attempt(session: Session, *, appointment: Appointment, patient: Patient, now: datetime
                 ) -> PaymentAttempt:
    """The charge's open attempt, or a new one (its UUID stored before any Stripe call)."""
    if appointment.patient_id != patient.id:
        raise PaymentRuleError("This is not your appointment.")
    if appointment.payment_timing != "deposit_to_book":
        raise PaymentRuleError("This visit is not paid at booking.")
    if appointment.status != "held" or appointment.hold_expires_at <= now:
        raise PaymentRuleError("Your hold on this time has ended. Please pick a time again.")
    if appointment.price_cents <= 0:
        raise PaymentRuleError("This visit has nothing to pay now.")
    charge = deposit_charge(session, appointment)
    open_ = session.scalar(select(PaymentAttempt).where(
        PaymentAttempt.charge_id == charge.id, PaymentAttempt.status.not_in(FINAL_STATUSES))
        .with_for_update())
    if open_ is not None:
        if open_.amount_cents == charge.amount_cents:
            return open_
        raise PaymentRuleError("The price changed; please reload the page.")
    number = (session.scalar(select(func.max(PaymentAttempt.number)).where(
        PaymentAttempt.charge_id == charge.id)) or 0) + 1
    attempt = PaymentAttempt(charge_id=charge.id, number=number, status="creating",
                             amount_cents=charge.amount_cents, currency=charge.currency)
    try:
        with session.begin_nested():
            session.add(attempt)
            session.flush()
    except IntegrityError:
        # Another tab opened the attempt at the same moment (one open attempt per charge): use it.
        open_ = session.scalar(select(PaymentAttempt).where(
            PaymentAttempt.charge_id == charge.id, PaymentAttempt.status.not_in(FINAL_STATUSES))
            .with_for_update())
        if open_ is None or open_.amount_cents != charge.amount_cents:
            raise
        return open_
    return attempt


def ensure_customer(session: Session, gateway: StripeGateway, patient: Patient, *, key: str) -> str:
    """One Stripe Customer per patient, carrying only our opaque id.

    The idempotency key comes from the attempt that needs the customer (its UUID
    is stored before the call): a key built from the patient's row id alone is
    not unique to this patient (another database or clinic on the same Stripe
    account, a restored backup, ids restarting), and Stripe would replay another
    patient's Customer for 24 hours."""
    if patient.stripe_customer_id:
        return patient.stripe_customer_id
    patient.stripe_customer_id = gateway.create_customer(key=key, metadata={"patient_id": str(patient.id)})
    session.flush()
    return patient.stripe_customer_id


def create_intent(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, *, patient: Patient,
                  appointment: Appointment, actor: Actor, now: datetime, timings: PaymentTimings
                  ) -> PaymentAttempt:
    """Create the attempt's PaymentIntent (idempotent on the attempt's UUID). Nothing clinical is sent."""
    if attempt.stripe_payment_intent_id:
        return attempt
    # Two tabs may get here for the same attempt: the row lock makes the second find the intent made.
    session.refresh(attempt, with_for_update=True)
    if attempt.stripe_payment_intent_id:
        return attempt
    customer = ensure_customer(session, gateway, patient, key=attempt.key("customer"))
    intent = gateway.create_intent(
        key=attempt.key("create"), amount=attempt.amount_cents, currency=attempt.currency, customer=customer,
        metadata={"attempt_uuid": str(attempt.uuid), "appointment_id": str(appointment.id),
                  "charge_id": str(attempt.charge_id), "patient_id": str(patient.id)},
        description=f"Appointment {appointment.id} deposit", save_card=attempt.save_card)
    _check(intent, attempt, appointment)
    attempt.stripe_payment_intent_id = intent.id
    attempt.client_secret = intent.client_secret
    attempt.status = intent.status
    attempt.poll_until = (appointment.hold_expires_at or now) + timings.poll_grace
    session.flush()
    _record(session, attempt, appointment, actor=actor, action="payment.attempted")
    from app.jobs.payments import schedule_poll
    from app.services.unit_of_work import after_commit

    after_commit(session, schedule_poll, attempt.id)      # polling starts once the intent exists
    return attempt


def set_save_card(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, save: bool) -> None:
    """"Save this card" updates the open intent (never a new one)."""
    if attempt.save_card == save or attempt.is_final or not attempt.stripe_payment_intent_id:
        attempt.save_card = save
        return
    gateway.update_intent(attempt.stripe_payment_intent_id, key=attempt.key(f"save-card-{int(save)}"),
                          setup_future_usage="off_session" if save else None)
    attempt.save_card = save


# -- applying what Stripe says -------------------------------------------------------------------

def _check(intent: Intent, attempt: PaymentAttempt, appointment: Appointment) -> None:
    meta = intent.metadata
    if (intent.amount != attempt.amount_cents or intent.currency != attempt.currency
            or meta.get("attempt_uuid") != str(attempt.uuid)
            or meta.get("appointment_id") != str(appointment.id)):
        raise IntentMismatch(f"PaymentIntent {intent.id} does not match attempt {attempt.id}")


def _failure_key(intent: Intent) -> str:
    error = intent.last_error
    return error.charge or f"{error.code}:{error.decline_code}:{error.payment_method}"


def sync_attempt(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, *, now: datetime,
                 actor: Actor, timings: PaymentTimings, source: str) -> SyncResult:
    """Re-read the PaymentIntent and apply its current status. The caller holds the attempt's row lock."""
    appointment = session.get(Appointment, attempt.charge.appointment_id, with_for_update=True)
    if not attempt.stripe_payment_intent_id:
        return SyncResult("pending")
    intent = gateway.retrieve_intent(attempt.stripe_payment_intent_id)
    try:
        _check(intent, attempt, appointment)
    except IntentMismatch as error:
        _record(session, attempt, appointment, actor=actor, action="payment.mismatch", outcome="failure",
                reason=str(error), details={"source": source})
        raise

    if attempt.is_final:                           # a final state never changes back
        return _final_result(attempt, appointment)

    previous = attempt.status
    message = None
    if intent.last_error is not None and intent.status == "requires_payment_method":
        key = _failure_key(intent)
        exists = session.scalar(select(PaymentFailure.id).where(PaymentFailure.attempt_id == attempt.id,
                                                                PaymentFailure.dedupe_key == key))
        message = decline_message(intent.last_error.code, intent.last_error.decline_code)
        if exists is None:
            session.add(PaymentFailure(attempt_id=attempt.id, dedupe_key=key, code=intent.last_error.code,
                                       decline_code=intent.last_error.decline_code,
                                       stripe_charge_id=intent.last_error.charge, occurred_at=now))
            _record(session, attempt, appointment, actor=actor, action="payment.declined", outcome="failure",
                    details={"code": intent.last_error.code, "decline_code": intent.last_error.decline_code,
                             "source": source})
            signals.send_after_commit(session, signals.payment_declined, appointment, key)
    attempt.status = intent.status
    session.flush()

    if intent.status in ("requires_action", "processing"):
        if previous != intent.status and intent.status == "requires_action":
            _record(session, attempt, appointment, actor=actor, action="payment.requires_action",
                    details={"source": source})
        _extend_hold(session, appointment, now=now, timings=timings, actor=actor)
        return SyncResult("requires_action" if intent.status == "requires_action" else "pending")

    if intent.status == "requires_capture":
        if previous != "requires_capture":
            _record(session, attempt, appointment, actor=actor, action="payment.succeeded",
                    details={"source": source, "stage": "authorized"})
            attempt.charge.status = "authorized"
        return _lock_in(session, attempt, appointment, now=now, actor=actor)

    if intent.status == "succeeded":               # captured elsewhere (e.g. a crash after capture)
        _mark_captured(session, attempt, appointment, intent, now=now, actor=actor)
        return SyncResult("confirmed")

    if intent.status == "canceled":
        _mark_canceled(session, attempt, appointment, now=now, actor=actor, reason="canceled at Stripe")
        return SyncResult("canceled", message="This payment was canceled.")

    if message:
        return SyncResult("declined", message=message)
    return SyncResult("pending")


def _final_result(attempt: PaymentAttempt, appointment: Appointment) -> SyncResult:
    if attempt.status == "succeeded":
        return SyncResult("confirmed")
    if attempt.outcome == "slot_lost":
        return SyncResult("slot_lost", message="Someone else booked this time while you were paying. "
                                               "You have not been charged.")
    return SyncResult("canceled", message="This payment was canceled.")


def _extend_hold(session: Session, appointment: Appointment, *, now: datetime, timings: PaymentTimings,
                 actor: Actor) -> None:
    """Once, while 3-D Secure or processing is under way; never past start - RELEASE_BEFORE_START."""
    if appointment.status != "held" or appointment.hold_extended:
        return
    limit = appointment.starts_at - timings.release_before_start
    new_expiry = min(appointment.hold_expires_at + timings.hold_extension, limit)
    appointment.hold_extended = True
    if new_expiry <= appointment.hold_expires_at:
        return
    old = appointment.hold_expires_at
    appointment.hold_expires_at = new_expiry
    audit.record(session, actor=actor, action="hold.extended", patient_id=appointment.patient_id,
                 appointment_id=appointment.id,
                 details={"from": old.isoformat(), "to": new_expiry.isoformat()})
    from app.jobs.booking import schedule_hold_expiry
    from app.services.unit_of_work import after_commit

    after_commit(session, schedule_hold_expiry, appointment.id, new_expiry)


def _lock_in(session: Session, attempt: PaymentAttempt, appointment: Appointment, *, now: datetime,
             actor: Actor) -> SyncResult:
    """Authorized: confirm the booking (taking the slot again if it was released), or give the money back."""
    if appointment.status in ("confirmed", "checked_in", "completed"):
        return SyncResult("confirmed", capture_ready=True)
    if appointment.status in ("held", "released"):
        try:
            booking.confirm(session, appointment, actor=actor, now=now,
                            reason=f"deposit authorized (attempt {attempt.id})")
        except booking.SlotTaken as taken:
            attempt.outcome = "slot_lost"
            _record(session, attempt, appointment, actor=actor, action="payment.slot_lost", outcome="failure",
                    reason="the slot was booked by someone else before the payment succeeded")
            _queue_cancel(session, attempt)
            return SyncResult("slot_lost", nearest=taken.nearest,
                              message="Someone else booked this time while you were paying. "
                                      "You have not been charged; your card's hold will be released.")
        return SyncResult("confirmed", capture_ready=True)
    # canceled / no_show: never capture for a slot the patient does not have.
    attempt.outcome = "appointment_" + appointment.status
    _queue_cancel(session, attempt)
    return SyncResult("canceled", message="This appointment was canceled; you have not been charged.")


def _queue_cancel(session: Session, attempt: PaymentAttempt) -> None:
    from app.jobs.payments import cancel_payment
    from app.jobs import enqueue
    from app.services.unit_of_work import after_commit

    after_commit(session, enqueue, cancel_payment, attempt.id, "slot no longer held")


# -- money moves, after the commit ----------------------------------------------------------------

def capture_attempt(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, *, now: datetime,
                    actor: Actor) -> bool:
    """Capture an authorized attempt whose booking is confirmed. The caller holds the row lock."""
    appointment = session.get(Appointment, attempt.charge.appointment_id)
    if attempt.status != "requires_capture":
        return False
    if appointment.status not in ("confirmed", "checked_in", "completed"):
        return cancel_attempt(session, gateway, attempt, now=now, actor=actor, reason="slot no longer held")
    intent = gateway.capture(attempt.stripe_payment_intent_id, key=attempt.key("capture"))
    _mark_captured(session, attempt, appointment, intent, now=now, actor=actor)
    return True


def _mark_captured(session, attempt, appointment, intent: Intent, *, now, actor) -> None:
    if attempt.status == "succeeded":
        return
    attempt.status = "succeeded"
    attempt.amount_captured_cents = intent.amount_received
    attempt.captured_at = now
    attempt.charge.status = "captured"
    attempt.charge.amount_captured_cents = intent.amount_received
    session.flush()
    _record(session, attempt, appointment, actor=actor, action="payment.captured",
            details={"amount_received": intent.amount_received})


def cancel_attempt(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, *, now: datetime,
                   actor: Actor, reason: str) -> bool:
    """Cancel an open attempt's intent (its authorization is released). The caller holds the row lock."""
    appointment = session.get(Appointment, attempt.charge.appointment_id)
    if attempt.is_final:
        return False
    if attempt.stripe_payment_intent_id:
        intent = gateway.cancel(attempt.stripe_payment_intent_id, key=attempt.key("cancel"), reason="abandoned")
        if intent.status == "succeeded":        # captured after all: keep the truth
            _mark_captured(session, attempt, appointment, intent, now=now, actor=actor)
            return False
    _mark_canceled(session, attempt, appointment, now=now, actor=actor, reason=reason)
    return True


def _mark_canceled(session, attempt, appointment, *, now, actor, reason) -> None:
    if attempt.status == "canceled":
        return
    attempt.status = "canceled"
    attempt.canceled_at = now
    attempt.cancellation_reason = reason[:64]
    if attempt.charge.status in ("pending", "authorized"):
        attempt.charge.status = "canceled"
    session.flush()
    _record(session, attempt, appointment, actor=actor, action="payment.canceled", reason=reason)


def open_attempts_for(session: Session, appointment_id: int) -> list[PaymentAttempt]:
    return list(session.scalars(
        select(PaymentAttempt).join(Charge).where(Charge.appointment_id == appointment_id,
                                                  PaymentAttempt.status.not_in(FINAL_STATUSES))
        .with_for_update(of=PaymentAttempt)))


def attempt_by_intent(session: Session, intent_id: str, *, lock: bool = True) -> PaymentAttempt | None:
    query = select(PaymentAttempt).where(PaymentAttempt.stripe_payment_intent_id == intent_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def current_attempt(session: Session, appointment: Appointment, *, lock: bool = False) -> PaymentAttempt | None:
    query = (select(PaymentAttempt).join(Charge).where(Charge.appointment_id == appointment.id,
                                                       Charge.purpose == "deposit")
             .order_by(PaymentAttempt.number.desc()).limit(1))
    if lock:
        query = query.with_for_update(of=PaymentAttempt)
    return session.scalar(query)
