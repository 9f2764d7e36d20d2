"""Saved cards: the cards a patient keeps on file with Stripe, paying with one, removing one.

A card is saved by a first payment with "save this card" (setup_future_usage
on the open intent: Stripe attaches the PaymentMethod to the patient's
Customer once the payment succeeds). Stripe holds the card; we show and keep
only brand, last 4 and expiry, and remember which one is the patient's
default (``Patient.default_payment_method_id``) so the next checkout
pre-selects it.

Paying with a saved card confirms the attempt's one PaymentIntent on-session
(the patient is present, so 3-D Secure may be asked); the caller then runs
``settlement.settle`` like every other completion path, which decides.

Like every service: plain arguments in, no request globals, no commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.integrations.stripe_gateway import Card, Intent, StripeGateway
from app.models import Appointment, AuditEvent, Patient, PaymentAttempt, PaymentFailure
from app.services import DomainError, audit
from app.services.audit import Actor
from app.services.gateway import domain_errors

CONFIRM_ACTION = "payment.saved_card_confirmed"
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


class NotYourCard(DomainError):
    """The payment method is not one of this patient's saved cards."""

    def __init__(self, message: str = _l("That card is not saved on your account.")):
        super().__init__(message)


class CardRuleError(DomainError):
    pass


@dataclass(frozen=True)
class SavedCard:
    """What a page may show of a card: brand, last 4, expiry (and Stripe's id to act on it)."""
    id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    is_default: bool = False

    @property
    def label(self) -> str:
        return f"{self.brand} •••• {self.last4}"

    @property
    def expiry(self) -> str:
        if not self.exp_month or not self.exp_year:
            return ""
        return f"{self.exp_month:02d}/{self.exp_year % 100:02d}"


BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
          "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay"}


def _saved(card: Card, default_id: str | None) -> SavedCard:
    brand = BRANDS.get((card.brand or "").lower(), (card.brand or "Card").title())
    return SavedCard(card.id, brand, card.last4 or "????", card.exp_month, card.exp_year,
                     is_default=card.id == default_id)


@domain_errors
def list_cards(gateway: StripeGateway, patient: Patient) -> list[SavedCard]:
    """The patient's saved cards as Stripe holds them, the default first."""
    if not patient.stripe_customer_id:
        return []
    found = [_saved(card, patient.default_payment_method_id)
             for card in gateway.list_cards(patient.stripe_customer_id)]
    return sorted(found, key=lambda c: not c.is_default)          # stable: Stripe's order otherwise


def preselected(cards: list[SavedCard]) -> SavedCard | None:
    """The card checkout offers first: the default, else the first Stripe lists."""
    return next((c for c in cards if c.is_default), cards[0] if cards else None)


def _own_card(gateway: StripeGateway, patient: Patient, payment_method: str) -> SavedCard:
    card = next((c for c in list_cards(gateway, patient) if c.id == payment_method), None)
    if card is None:
        raise NotYourCard()
    return card


def refuse(session: Session, *, patient: Patient, payment_method: str, actor: Actor, what: str,
           appointment_id: int | None = None) -> None:
    """Audit a refused card (someone else's, or one that is gone): the caller commits the refusal."""
    audit.record(session, actor=actor, action="card.refused", outcome="failure", patient_id=patient.id,
                 appointment_id=appointment_id, reason=f"{what}: not a saved card of this patient",
                 details={"payment_method": payment_method[:64]})


# -- removing ----------------------------------------------------------------------------------

@domain_errors
def remove_card(session: Session, gateway: StripeGateway, *, patient: Patient, payment_method: str,
                actor: Actor) -> SavedCard:
    """Detach one of the patient's cards in Stripe (audited); clear the default if it was that one."""
    card = _own_card(gateway, patient, payment_method)
    # Customer ids are unique across the Stripe account and a detach is safe to replay.
    gateway.detach_card(card.id, key=f"detach:{patient.stripe_customer_id}:{card.id}")
    was_default = patient.default_payment_method_id == card.id
    if was_default:
        patient.default_payment_method_id = None
    audit.record(session, actor=actor, action="card.removed", patient_id=patient.id, stripe_object_id=card.id,
                 details={"brand": card.brand, "last4": card.last4, "was_default": was_default})
    for appointment in relying_on(session, patient, card.id):       # post-visit / hybrid: "card needed"
        appointment.payment_method_id = None
        audit.record(session, actor=actor, action="card.needed", patient_id=patient.id,
                     appointment_id=appointment.id, stripe_object_id=card.id,
                     details={"brand": card.brand, "last4": card.last4, "status": appointment.status})
    session.flush()
    return card


# -- post-visit and hybrid appointments that rely on a saved card --------------------------------

CARD_TIMINGS = ("post_visit", "hybrid")      # a card is kept on file to charge later


def _relying(patient_id: int):
    """An appointment of the patient that a card is needed for:

    * post-visit: upcoming (confirmed or checked in), or with its visit charge still open (a
      CollectionCase not paid or written off);
    * hybrid (the balance after the insurer answers): upcoming, or seen and its insurer's answer not
      yet reconciled (no Reconciliation row: the balance may still be charged), or with its balance
      charge still open (a CollectionCase of the balance)."""
    from app.models import CollectionCase, Reconciliation
    from app.models.postvisit import CASE_OPEN

    open_case = select(CollectionCase.id).where(CollectionCase.appointment_id == Appointment.id,
                                                CollectionCase.status.in_(CASE_OPEN)).exists()
    unreconciled = ~select(Reconciliation.id).where(Reconciliation.appointment_id == Appointment.id).exists()
    upcoming = Appointment.status.in_(("confirmed", "checked_in"))
    post_visit = (Appointment.payment_timing == "post_visit") & (upcoming | open_case)
    hybrid = (Appointment.payment_timing == "hybrid") & (
        upcoming | ((Appointment.status == "completed") & unreconciled) | open_case)
    return select(Appointment).where(Appointment.patient_id == patient_id, post_visit | hybrid) \
        .order_by(Appointment.starts_at)


def relying_on(session: Session, patient: Patient, payment_method: str) -> list[Appointment]:
    """The patient's post-visit and hybrid appointments that will be charged to this card."""
    return list(session.scalars(_relying(patient.id).where(Appointment.payment_method_id == payment_method)))


def needing_a_card(session: Session, patient: Patient) -> list[Appointment]:
    """The patient's post-visit and hybrid appointments left with no card to charge ("card needed")."""
    return list(session.scalars(_relying(patient.id).where(Appointment.payment_method_id.is_(None))))


def needs_card(session: Session, appointment: Appointment) -> bool:
    if appointment.payment_timing not in CARD_TIMINGS or appointment.payment_method_id is not None:
        return False
    return session.scalar(_relying(appointment.patient_id).where(Appointment.id == appointment.id)
                          .with_only_columns(Appointment.id)) is not None


# -- paying ------------------------------------------------------------------------------------

def _confirmations(session: Session, attempt: PaymentAttempt) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.payment_attempt_id == attempt.id, AuditEvent.action == CONFIRM_ACTION)) or 0


def _failures(session: Session, attempt: PaymentAttempt) -> int:
    return session.scalar(select(func.count()).select_from(PaymentFailure).where(
        PaymentFailure.attempt_id == attempt.id)) or 0


def confirm_key(session: Session, attempt: PaymentAttempt, payment_method: str) -> str:
    """One key per confirmation: a retry of the same request replays; a new try after a decline
    or a failed 3-D Secure (each recorded, each confirmation audited) is a new confirmation."""
    return attempt.key(f"confirm-saved-{payment_method}-f{_failures(session, attempt)}"
                       f"-c{_confirmations(session, attempt)}")


@domain_errors
def pay_with_saved_card(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, *,
                        patient: Patient, payment_method: str, return_url: str, now: datetime, actor: Actor):
    """Confirm the open attempt's PaymentIntent on-session with a saved card; returns the Intent.

    The caller holds the attempt's row lock, has applied the intent's current state
    (so a recorded decline counts), commits, and then runs ``settlement.settle``."""
    appointment = session.get(Appointment, attempt.charge.appointment_id)
    if appointment.patient_id != patient.id:
        raise CardRuleError(_l("This is not your appointment."))
    if attempt.is_final or attempt.status not in CONFIRMABLE or not attempt.stripe_payment_intent_id:
        raise CardRuleError(_l("This payment is already under way. Please reload the page."))
    if appointment.status != "held" or appointment.hold_expires_at <= now:
        raise CardRuleError(_l("Your hold on this time has ended. Please pick a time again."))
    card = _own_card(gateway, patient, payment_method)
    key = confirm_key(session, attempt, card.id)
    intent = gateway.confirm_intent(attempt.stripe_payment_intent_id, key=key, payment_method=card.id,
                                    return_url=return_url)
    audit.record(session, actor=actor, action=CONFIRM_ACTION, patient_id=patient.id,
                 appointment_id=appointment.id, payment_attempt_id=attempt.id,
                 stripe_object_id=attempt.stripe_payment_intent_id,
                 details={"payment_method": card.id, "brand": card.brand, "last4": card.last4,
                          "status": intent.status, "key": key.rsplit(":", 1)[-1]})
    return intent


@domain_errors
def remember_default(session: Session, gateway: StripeGateway, attempt: PaymentAttempt, *, patient: Patient,
                     actor: Actor, intent: Intent | None = None) -> str | None:
    """After a payment succeeded with a card kept on file, make it the patient's default card.
    ``intent``: the attempt's PaymentIntent as just read from Stripe with its payment method
    expanded (settle's read), which spares reading it, and the patient's cards, again."""
    if attempt.status not in ("requires_capture", "succeeded") or not attempt.stripe_payment_intent_id:
        return None
    if intent is None or intent.id != attempt.stripe_payment_intent_id or not intent.payment_method_expanded:
        intent = gateway.retrieve_intent(attempt.stripe_payment_intent_id)
    pm = intent.payment_method
    if not pm or pm == patient.default_payment_method_id or not patient.stripe_customer_id:
        return None
    if not (attempt.save_card and intent.setup_future_usage):
        # Not saved by this payment: it must be one of the patient's cards already (paid with a saved card).
        # (``retrieve_intent`` expands the payment method: the customer it is attached to is known.)
        if intent.payment_method_customer != patient.stripe_customer_id:
            return None
    previous = patient.default_payment_method_id
    patient.default_payment_method_id = pm
    audit.record(session, actor=actor, action="card.default_set", patient_id=patient.id,
                 payment_attempt_id=attempt.id, stripe_object_id=pm,
                 appointment_id=attempt.charge.appointment_id,
                 details={"brand": intent.card_brand, "last4": intent.card_last4, "previous": previous})
    session.flush()
    return pm
