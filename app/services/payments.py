"""Deposit-to-book payments: opening a charge's attempt and its PaymentIntent.

The card is authorized (capture_method=manual) while the slot is held; the
booking is confirmed only once Stripe says the authorization succeeded; the
money is captured only after that confirmation has committed. This module
opens the attempt (its UUID — the root of every idempotency key — stored
before Stripe hears of it) and creates its PaymentIntent with opaque ids only.
Everything after that — applying what Stripe says, confirming the booking,
capturing or releasing the authorization — is ``app.services.settlement``.
No function here commits.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.integrations.stripe_gateway import Intent, StripeGateway
from app.models import Appointment, Charge, Patient, PaymentAttempt
from app.models.payment import FINAL_STATUSES
from app.services import DomainError, audit
from app.services.audit import Actor
from app.services.gateway import domain_errors
from app.services.unit_of_work import request

log = logging.getLogger(__name__)

# Plain words for the patient (lazy: in the page's language). Lost, stolen and fraud-like declines
# read as a generic decline (Stripe's guidance: never tell a fraudster why).
GENERIC = _l("Your card was declined. Please try another card or payment method.")
DECLINE_MESSAGES = {
    "insufficient_funds": _l("Your card has insufficient funds. Please try another card."),
    "card_velocity_exceeded": _l("Your card has been used too many times recently. Please try another card."),
    "expired_card": _l("Your card has expired. Please use another card."),
    "incorrect_cvc": _l("The security code (CVC) is incorrect. Check it and try again."),
    "processing_error": _l("We could not process your card just now. Please try again."),
    "incorrect_number": _l("The card number is incorrect. Check it and try again."),
    "payment_intent_authentication_failure": _l("Your bank could not confirm it was you. Try again or use "
                                                "another card."),
    "authentication_required": _l("Your bank needs you to confirm this payment. Please try again."),
}


def decline_message(code: str | None, decline_code: str | None) -> str:
    if decline_code in DECLINE_MESSAGES:
        return DECLINE_MESSAGES[decline_code]
    if code in DECLINE_MESSAGES:
        return DECLINE_MESSAGES[code]
    return GENERIC


class PaymentRuleError(DomainError):
    pass


class NoEstimate(PaymentRuleError):
    """A hybrid hold with no estimate attached: the patient goes through intake first."""


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


def record(session: Session, attempt: PaymentAttempt, appointment: Appointment, *, actor: Actor,
            action: str, outcome: str = "success", reason: str | None = None, details: dict | None = None
            ) -> None:
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 patient_id=appointment.patient_id, appointment_id=appointment.id,
                 payment_attempt_id=attempt.id, stripe_object_id=attempt.stripe_payment_intent_id,
                 details={"charge_id": attempt.charge_id, "attempt": attempt.number,
                          "amount_cents": attempt.amount_cents, **(details or {})})


# -- opening an attempt ------------------------------------------------------------------------

def deposit_charge(session: Session, appointment: Appointment, amount_cents: int | None = None) -> Charge:
    """The appointment's deposit charge, made once even when two tabs open checkout at the same moment.
    ``amount_cents``: what the deposit is (default the visit's price; a hybrid visit's estimate deposit)."""
    query = select(Charge).where(Charge.appointment_id == appointment.id, Charge.purpose == "deposit")
    charge = session.scalar(query)
    if charge is None:
        session.execute(pg_insert(Charge).values(
            appointment_id=appointment.id, purpose="deposit",
            amount_cents=appointment.price_cents if amount_cents is None else amount_cents,
            currency="usd", status="pending", amount_captured_cents=0, amount_refunded_cents=0)
            .on_conflict_do_nothing(constraint="uq_charges_appointment_purpose"))
        charge = session.scalar(query)
    return charge


# Timings paid at booking with a PaymentIntent: deposit-to-book (the price) and hybrid (the estimate's
# deposit; a zero deposit saves the card with a SetupIntent instead: app.services.card_setup).
BOOKING_TIMINGS = ("deposit_to_book", "hybrid")


def deposit_due(session: Session, appointment: Appointment) -> int:
    """What the appointment pays at booking: the visit's price, or a hybrid visit's estimate deposit
    (``hybrid_deposit.NoEstimate``, a PaymentRuleError, when no estimate is attached)."""
    if appointment.payment_timing == "hybrid":
        from app.services import hybrid_deposit

        try:
            return hybrid_deposit.deposit_due(session, appointment)
        except hybrid_deposit.NoEstimate as error:
            raise NoEstimate(str(error)) from None
    return appointment.price_cents


def open_attempt(session: Session, *, appointment: Appointment, patient: Patient, now: datetime
                 ) -> PaymentAttempt:
    """The charge's open attempt, or a new one (its UUID stored before any Stripe call)."""
    if appointment.patient_id != patient.id:
        raise PaymentRuleError(_l("This is not your appointment."))
    if appointment.payment_timing not in BOOKING_TIMINGS:
        raise PaymentRuleError(_l("This visit is not paid at booking."))
    if appointment.status != "held" or appointment.hold_expires_at <= now:
        raise PaymentRuleError(_l("Your hold on this time has ended. Please pick a time again."))
    hybrid = appointment.payment_timing == "hybrid"
    amount = deposit_due(session, appointment)
    if amount <= 0:
        raise PaymentRuleError(_l("This visit has nothing to pay now."))
    charge = deposit_charge(session, appointment, amount)
    open_ = session.scalar(select(PaymentAttempt).where(
        PaymentAttempt.charge_id == charge.id, PaymentAttempt.status.not_in(FINAL_STATUSES))
        .with_for_update())
    if open_ is not None:
        if open_.amount_cents == charge.amount_cents:
            return open_
        raise PaymentRuleError(_l("The price changed; please reload the page."))
    if charge.can("reopen"):          # the last attempt was canceled; the hold is still the patient's
        charge.transition("reopen")
    number = (session.scalar(select(func.max(PaymentAttempt.number)).where(
        PaymentAttempt.charge_id == charge.id)) or 0) + 1
    # A hybrid deposit always keeps the card (setup_future_usage=off_session): the balance after the
    # insurer answers is charged to it.
    attempt = PaymentAttempt(charge_id=charge.id, number=number, status="creating",
                             amount_cents=charge.amount_cents, currency=charge.currency, save_card=hybrid)
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


@domain_errors
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
    if attempt.is_final:               # the sweep gave it up as abandoned meanwhile
        raise PaymentRuleError(_l("This payment was set aside. Please reload the page."))
    customer = ensure_customer(session, gateway, patient, key=attempt.key("customer"))
    intent = gateway.create_intent(
        key=attempt.key("create"), amount=attempt.amount_cents, currency=attempt.currency, customer=customer,
        metadata={"attempt_uuid": str(attempt.uuid), "appointment_id": str(appointment.id),
                  "charge_id": str(attempt.charge_id), "patient_id": str(patient.id)},
        description=f"Appointment {appointment.id} deposit", save_card=attempt.save_card)
    check_intent(intent, attempt, appointment)
    attempt.stripe_payment_intent_id = intent.id
    attempt.client_secret = intent.client_secret
    attempt.mirror(intent.status)
    attempt.poll_until = (appointment.hold_expires_at or now) + timings.poll_grace
    session.flush()
    record(session, attempt, appointment, actor=actor, action="payment.attempted")
    request(session, "poll_payment", attempt.id)           # polling starts once the intent exists
    return attempt


@domain_errors
def set_save_card(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, save: bool) -> None:
    """"Save this card" updates the open intent (never a new one). A hybrid deposit's card is always kept."""
    if not save and attempt.charge.appointment.payment_timing == "hybrid":
        raise PaymentRuleError(_l("This card is kept for the balance after your insurer answers."))
    if attempt.save_card == save or attempt.is_final or not attempt.stripe_payment_intent_id:
        attempt.save_card = save
        return
    gateway.update_intent(attempt.stripe_payment_intent_id, key=attempt.key(f"save-card-{int(save)}"),
                          setup_future_usage="off_session" if save else None)
    attempt.save_card = save


# -- applying what Stripe says -------------------------------------------------------------------

def check_intent(intent: Intent, attempt: PaymentAttempt, appointment: Appointment) -> None:
    meta = intent.metadata
    if (intent.amount != attempt.amount_cents or intent.currency != attempt.currency
            or meta.get("attempt_uuid") != str(attempt.uuid)
            or meta.get("appointment_id") != str(appointment.id)):
        raise IntentMismatch(f"PaymentIntent {intent.id} does not match attempt {attempt.id}")


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
