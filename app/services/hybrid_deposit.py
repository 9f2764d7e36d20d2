"""Hybrid timing at checkout (issue 15): the deposit from the estimate, the card kept for the balance,
and the patient's consent to a later balance charge (or a refund of the difference).

A hybrid appointment is held with its Estimate attached (``Estimate.appointment_id``; H2's
``estimates.attach`` at the hold). Checkout then:

* deposit > 0: opens a deposit Charge for ``estimate.deposit_cents`` (not the type's price) and a
  PaymentAttempt like deposit-to-book (authorized, the booking confirmed, then captured), its
  PaymentIntent created with ``setup_future_usage=off_session`` (``save_card`` forced) so Stripe
  attaches the card to the patient's Customer;
* deposit 0: saves the card with a SetupIntent (``card_setup``), nothing charged.

The consent: the page's required box is ticked and submitted before Stripe.js confirms. For a
deposit its acceptance (which wording, when, who) is an audit row, ``consent.accepted`` (the
payment attempt has no consent columns: see the docs); ``after_deposit`` — run by
``settlement.settle`` whenever a hybrid deposit's attempt settles as confirmed, under the attempt's
and the appointment's row locks, whichever path comes first (page, webhook, poll, sweep) — writes
the one ``PaymentConsent`` (kind ``hybrid_balance``, the exact wording, its version, the card) and
points the appointment at the card (``payment_method_id``; the patient's default card if they have
none). The zero-deposit path writes its consent through ``card_setup`` (same kind, its own wording).

No function here commits.
"""
from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlencode

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.integrations.stripe_gateway import Intent
from app.models import Appointment, AuditEvent, Estimate, Patient, PaymentAttempt, PaymentConsent
from app.i18n import N_
from app.services import DomainError, audit
from app.services.audit import Actor

log = logging.getLogger(__name__)

CONSENT_KIND = "hybrid_balance"
CONSENT_VERSION = "hybrid-balance-v1"
# The wordings are stored as written (English evidence, with their version); pages show gettext(wording).
CONSENT_WORDING = N_(
    "I authorize the clinic to charge the deposit shown above to this card now and to keep this card on "
    "file. The deposit is based on an estimate of my share of the cost of this visit. After my insurer "
    "answers the clinic's claim for this visit, the clinic will charge the rest of what my insurer says "
    "I owe to this card, without me being present, or refund the difference to this card if I paid more "
    "than I owe. Amounts my insurer's contract says the clinic may not bill me are never charged. I can "
    "replace this card in my account before the charge.")
# The zero-deposit path (a SetupIntent: nothing charged now), recorded by card_setup.
SETUP_CONSENT_VERSION = "hybrid-balance-setup-v1"
SETUP_CONSENT_WORDING = N_(
    "Nothing is charged now. I authorize the clinic to keep this card on file. After my insurer answers "
    "the clinic's claim for this visit, the clinic will charge what my insurer says I owe to this card, "
    "without me being present. Amounts my insurer's contract says the clinic may not bill me are never "
    "charged. I can replace this card in my account before the charge.")
CONSENTS = {CONSENT_VERSION: CONSENT_WORDING, SETUP_CONSENT_VERSION: SETUP_CONSENT_WORDING}

ACCEPTED = "consent.accepted"
MISSING = "consent.missing"
NO_CONSENT = _l("Please tick the box to agree to the balance charge or refund after your insurer answers, "
                "then try again.")
NO_ESTIMATE = _l("Before you pay, tell us about you and your insurance so we can estimate your share "
                 "(about 5 minutes).")


class HybridError(DomainError):
    pass


class NoEstimate(HybridError):
    """A hybrid hold without an attached estimate cannot be paid: intake first."""

    def __init__(self, message: str = NO_ESTIMATE):
        super().__init__(message)


def estimate_for(session: Session, appointment_id: int) -> Estimate | None:
    """The estimate kept with the appointment (H2's ``estimates.for_appointment``; the newest
    attached one read directly if that module is unavailable)."""
    try:
        from app.services import estimates
        finder = estimates.for_appointment
    except (ImportError, AttributeError):          # pragma: no cover - H2's module missing
        finder = None
    if finder is not None:
        return finder(session, appointment_id)
    return session.scalar(select(Estimate).where(Estimate.appointment_id == appointment_id)
                          .order_by(Estimate.id.desc()).limit(1))


def deposit_due(session: Session, appointment: Appointment) -> int:
    """What a hybrid appointment pays at booking: its estimate's deposit. ``NoEstimate`` without one."""
    estimate = estimate_for(session, appointment.id)
    if estimate is None:
        raise NoEstimate()
    return max(0, int(estimate.deposit_cents or 0))


def intake_url(appointment: Appointment) -> str:
    """Where a patient without an estimate goes: intake for this visit type (H1's route)."""
    return "/intake/start?" + urlencode({"type_id": appointment.type_id, "provider_id": appointment.provider_id})


# -- the consent, accepted on the page before the card is confirmed --------------------------------

def _accepted_row(session: Session, appointment_id: int, version: str = CONSENT_VERSION) -> AuditEvent | None:
    return session.scalar(select(AuditEvent).where(
        AuditEvent.appointment_id == appointment_id, AuditEvent.action == ACCEPTED,
        AuditEvent.details["kind"].astext == CONSENT_KIND, AuditEvent.details["version"].astext == version)
        .order_by(AuditEvent.seq).limit(1))


def accept_consent(session: Session, appointment: Appointment, *, attempt: PaymentAttempt | None, user_id: int | None,
                   version: str, now: datetime, actor: Actor) -> bool:
    """The patient ticked the box and pressed pay (before Stripe.js confirms): which wording, when,
    who, as one audit row per appointment and version. True if recorded now."""
    if version != CONSENT_VERSION:
        raise HybridError(_l("Please reload the page: the wording you agreed to has changed."))
    # Two tabs (or a double press) at once: the appointment's row lock makes the second see the first's row.
    session.execute(select(Appointment.id).where(Appointment.id == appointment.id).with_for_update())
    if _accepted_row(session, appointment.id, version) is not None:
        return False
    audit.record(session, actor=actor, action=ACCEPTED, patient_id=appointment.patient_id,
                 appointment_id=appointment.id, payment_attempt_id=attempt.id if attempt else None,
                 stripe_object_id=attempt.stripe_payment_intent_id if attempt else None, at=now,
                 details={"kind": CONSENT_KIND, "version": version, "accepted_by_id": user_id,
                          "accepted_at": now.isoformat()})
    session.flush()
    return True


def consent_of(session: Session, appointment_id: int) -> PaymentConsent | None:
    return session.scalar(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment_id,
                                                       PaymentConsent.kind == CONSENT_KIND)
                          .order_by(PaymentConsent.id).limit(1))


# -- settle's hook: the deposit succeeded --------------------------------------------------------

def after_deposit(session: Session, attempt: PaymentAttempt, appointment: Appointment, intent: Intent, *,
                  actor: Actor, now: datetime) -> None:
    """A hybrid deposit's attempt settled as confirmed (authorized or captured): the appointment
    relies on the card that paid; the one ``hybrid_balance`` PaymentConsent is written. Idempotent;
    the caller (``settlement._apply``) holds the attempt's and the appointment's row locks."""
    pm = intent.payment_method
    if pm and appointment.payment_method_id is None:
        appointment.payment_method_id = pm
        audit.record(session, actor=actor, action="card.on_file", patient_id=appointment.patient_id,
                     appointment_id=appointment.id, payment_attempt_id=attempt.id, stripe_object_id=pm,
                     details={"brand": intent.card_brand, "last4": intent.card_last4, "for": "hybrid balance"})
        patient = session.get(Patient, appointment.patient_id)
        saved = intent.payment_method_customer is None or intent.payment_method_customer == patient.stripe_customer_id
        if patient.default_payment_method_id is None and saved:
            patient.default_payment_method_id = pm
            audit.record(session, actor=actor, action="card.default_set", patient_id=patient.id,
                         appointment_id=appointment.id, payment_attempt_id=attempt.id, stripe_object_id=pm,
                         details={"brand": intent.card_brand, "last4": intent.card_last4, "previous": None})
    _write_consent(session, attempt, appointment, intent, actor=actor, now=now)
    session.flush()


def _write_consent(session: Session, attempt: PaymentAttempt, appointment: Appointment, intent: Intent, *,
                   actor: Actor, now: datetime) -> bool:
    if consent_of(session, appointment.id) is not None:
        return False
    accepted = _accepted_row(session, appointment.id)
    if accepted is None:
        # Confirmed without our page's consent step (the page records it before Stripe.js confirms):
        # the deposit stands, but no balance may be charged off-session: said once.
        seen = session.scalar(select(AuditEvent.seq).where(AuditEvent.appointment_id == appointment.id,
                                                           AuditEvent.action == MISSING).limit(1))
        if seen is None:
            audit.record(session, actor=actor, action=MISSING, outcome="failure", patient_id=appointment.patient_id,
                         appointment_id=appointment.id, payment_attempt_id=attempt.id,
                         stripe_object_id=attempt.stripe_payment_intent_id,
                         reason="hybrid deposit confirmed without the balance consent",
                         details={"kind": CONSENT_KIND})
        return False
    details = accepted.details or {}
    consent = PaymentConsent(
        appointment_id=appointment.id, patient_id=appointment.patient_id, kind=CONSENT_KIND,
        wording=CONSENTS[details["version"]], wording_version=details["version"],
        payment_method_id=intent.payment_method or appointment.payment_method_id,
        card_brand=intent.card_brand or attempt.card_brand, card_last4=intent.card_last4 or attempt.card_last4,
        card_setup_id=None, accepted_at=accepted.occurred_at,
        accepted_by_id=details.get("accepted_by_id") or accepted.actor_id)
    session.add(consent)
    session.flush()
    audit.record(session, actor=actor, action="consent.recorded", patient_id=appointment.patient_id,
                 appointment_id=appointment.id, payment_attempt_id=attempt.id,
                 stripe_object_id=attempt.stripe_payment_intent_id,
                 details={"consent_id": consent.id, "kind": consent.kind, "version": consent.wording_version,
                          "last4": consent.card_last4, "accepted_at": consent.accepted_at.isoformat()})
    return True
