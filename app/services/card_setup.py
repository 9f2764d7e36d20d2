"""Post-visit booking: a card saved and verified with a SetupIntent (nothing charged), the patient's
consent to charge it after the visit, and the booking confirmed once both are in.

Like a deposit's PaymentAttempt, a ``CardSetup`` is stored (its UUID, the root of every idempotency
key) before Stripe hears of it, then its SetupIntent is created with opaque ids only. The patient
ticks the consent box; the page records the consent on the CardSetup (``accept_consent``: wording
version, time, user) *before* Stripe.js confirms the card, so whoever learns of the success first
(the browser, the webhook, the sweep) finds the consent there.

``settle_setup`` is the one routine that applies what Stripe says (this module's money-style
exception to "services never commit", like ``settlement.settle``: it is called from views, webhook
processing and the sweep, and commits its one transaction):

1. lock the CardSetup and its appointment; re-read the SetupIntent; check our ids;
2. mirror its status; record a failed confirmation once (``card_setup.failed``);
3. on success: keep the card (pm id, brand, last 4, expiry), write the one ``PaymentConsent``
   (the exact wording, its version, the time, the card), point the appointment at the card,
   make it the patient's default card if they have none, and confirm a held (or released) booking
   (``booking.confirm``; a slot taken meanwhile: ``slot_lost``, the card stays saved);
4. commit. A second call finds the work done and answers the same.

Re-adding a card to a booked post-visit or hybrid appointment ("card needed", or replacing the card)
is the same flow without the booking step; a hybrid one records the ``hybrid_balance`` consent with
the hybrid setup wording (``consent_for``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session, contains_eager

from app.integrations.stripe_gateway import Setup, StripeGateway
from app.models import Appointment, AuditEvent, CardSetup, Patient, PaymentConsent
from app.models.appointment import BOOKED
from app.models.postvisit import SETUP_FINAL
from app.services import DomainError, audit, booking, cards, hybrid_deposit, payments, insert_or_existing
from app.i18n import N_
from app.services.audit import Actor
from app.services.gateway import domain_errors, gateway
from app.services.retry import retry_transient

log = logging.getLogger(__name__)

CONSENT_VERSION = "post-visit-v1"
CONSENT_WORDING = N_(     # stored as written (English evidence); pages show gettext(wording)
    "Nothing is charged now. I authorize the clinic to keep this card on file and to charge it after "
    "my visit, without me being present. The price of the visit is set from the services my provider "
    "documents in my signed visit note, at the clinic's fee schedule, and is charged to this card after "
    "the visit. If I later agree to a payment plan for this visit, its instalments are charged to this "
    "card on their dates. I can replace this card in my account before the charge.")
CONSENTS = {CONSENT_VERSION: CONSENT_WORDING}
# A hybrid visit with a zero deposit saves its card here too (nothing charged), with the consent to
# the balance charge after the insurer answers (app.services.hybrid_deposit: its own wording).
CONSENTS[hybrid_deposit.SETUP_CONSENT_VERSION] = hybrid_deposit.SETUP_CONSENT_WORDING
CONSENT_KINDS = {CONSENT_VERSION: "post_visit_charge", hybrid_deposit.SETUP_CONSENT_VERSION: "hybrid_balance"}

REBOOK_STATUSES = ("confirmed", "checked_in", "completed")   # a card added again ("card needed")
SLOT_LOST = _l("Someone else booked this time while you were adding your card. Nothing was charged; "
               "your card is saved for your next booking.")
CANCELED = _l("This appointment was canceled. Nothing was charged.")
NO_CONSENT = _l("Please tick the box to agree to the charge after your visit, then try again.")
AUTH_FAILED = payments.DECLINE_MESSAGES["payment_intent_authentication_failure"]
SAVED_CONFIRM_ACTION = "card_setup.saved_card_confirmed"


class CardSetupError(DomainError):
    pass


class SetupMismatch(DomainError):
    """The SetupIntent does not belong to this CardSetup (our ids differ)."""


@dataclass
class SetupResult:
    state: str       # pending | requires_action | declined | confirmed | slot_lost | canceled | consent_needed
    message: str | None = None
    nearest: list = field(default_factory=list)
    card_last4: str | None = None
    client_secret: str | None = None


def _now() -> datetime:
    return current_app.extensions["clock"].now()


def _record(session: Session, setup: CardSetup, *, actor: Actor, action: str, outcome: str = "success",
            reason: str | None = None, details: dict | None = None) -> None:
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 patient_id=setup.patient_id, appointment_id=setup.appointment_id,
                 stripe_object_id=setup.stripe_setup_intent_id,
                 details={"card_setup_id": setup.id, **(details or {})})


# -- opening --------------------------------------------------------------------------------------

def open_setup(session: Session, *, appointment: Appointment, patient: Patient, now: datetime) -> CardSetup:
    """The appointment's open CardSetup, or a new one (its UUID stored before any Stripe call).

    A new booking: the appointment is held and its hold has not expired. A card added again:
    the appointment is booked (confirmed, checked in or completed)."""
    if appointment.patient_id != patient.id:
        raise CardSetupError(_l("This is not your appointment."))
    if appointment.payment_timing not in ("post_visit", "hybrid"):
        raise CardSetupError(_l("This visit is paid at booking."))
    if appointment.payment_timing == "hybrid" and appointment.status not in REBOOK_STATUSES:
        # A new hybrid booking saves its card here only when no deposit is due; a booked one (its deposit,
        # if any, paid) may always have its card replaced or added again for the balance ("card needed").
        try:
            if hybrid_deposit.deposit_due(session, appointment) > 0:
                raise CardSetupError(_l("This visit has a deposit to pay at booking."))
        except hybrid_deposit.NoEstimate as error:
            raise CardSetupError(str(error)) from None
    if appointment.status not in REBOOK_STATUSES and (
            appointment.status != "held" or appointment.hold_expires_at is None or appointment.hold_expires_at <= now):
        raise CardSetupError(_l("Your hold on this time has ended. Please pick a time again."))
    query = (select(CardSetup).where(CardSetup.appointment_id == appointment.id,
                                     CardSetup.status.not_in(SETUP_FINAL)).with_for_update())
    found = session.scalar(query)
    if found is not None:
        return found
    # One open setup per appointment: another tab's, opened at the same moment, is used.
    setup, _ = insert_or_existing(session, CardSetup(appointment_id=appointment.id, patient_id=patient.id,
                                                     status="creating"), lambda: session.scalar(query))
    return setup


def check_setup(si: Setup, setup: CardSetup) -> None:
    meta = si.metadata
    if meta.get("card_setup_uuid") != str(setup.uuid) or meta.get("appointment_id") != str(setup.appointment_id):
        raise SetupMismatch(f"SetupIntent {si.id} does not match card setup {setup.id}")


@domain_errors
def create_setup_intent(session: Session, gw: StripeGateway, setup: CardSetup, *, patient: Patient,
                        appointment: Appointment, actor: Actor) -> CardSetup:
    """Create the CardSetup's SetupIntent (idempotent on its UUID). Only opaque ids are sent."""
    if setup.stripe_setup_intent_id:
        return setup
    session.refresh(setup, with_for_update=True)       # two tabs: the second finds the intent made
    if setup.stripe_setup_intent_id:
        return setup
    if setup.is_final:
        raise CardSetupError(_l("This card setup was set aside. Please reload the page."))
    customer = payments.ensure_customer(session, gw, patient, key=setup.key("customer"))
    si = gw.create_setup_intent(key=setup.key("create"), customer=customer, metadata={
        "card_setup_uuid": str(setup.uuid), "appointment_id": str(appointment.id), "patient_id": str(patient.id)})
    check_setup(si, setup)
    _adopt(session, setup, si, actor=actor)
    return setup


def _adopt(session: Session, setup: CardSetup, si: Setup, *, actor: Actor, details: dict | None = None) -> None:
    setup.stripe_setup_intent_id = si.id
    setup.client_secret = si.client_secret
    setup.mirror(si.status)
    session.flush()
    _record(session, setup, actor=actor, action="card_setup.started", details={"status": si.status, **(details or {})})


def consent_for(appointment: Appointment) -> tuple[str, str]:
    """The consent's (version, wording) a setup for this appointment shows: the post-visit charge,
    or a zero-deposit hybrid visit's balance after the insurer answers."""
    if appointment.payment_timing == "hybrid":
        return hybrid_deposit.SETUP_CONSENT_VERSION, hybrid_deposit.SETUP_CONSENT_WORDING
    return CONSENT_VERSION, CONSENT_WORDING


def accept_consent(session: Session, setup: CardSetup, *, user, now: datetime,
                   version: str = CONSENT_VERSION) -> None:
    """The patient ticked the consent box (before the card is confirmed): which wording, when, who.
    The PaymentConsent row itself is written, with the card, once the setup succeeds."""
    appointment = setup.appointment or session.get(Appointment, setup.appointment_id)
    if version not in CONSENTS or version != consent_for(appointment)[0]:
        raise CardSetupError(_l("Please reload the page: the wording you agreed to has changed."))
    if setup.consent_accepted_at is not None and setup.consent_version == version:
        return
    setup.consent_version = version
    setup.consent_accepted_at = now
    setup.consent_by_id = getattr(user, "id", user)
    session.flush()


# -- one tap on a saved card ----------------------------------------------------------------------

def _count(session: Session, setup: CardSetup, action: str) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.appointment_id == setup.appointment_id, AuditEvent.action == action,
        AuditEvent.stripe_object_id == setup.stripe_setup_intent_id)) or 0


@domain_errors
def confirm_saved_card(session: Session, gw: StripeGateway, setup: CardSetup, *, patient: Patient,
                       payment_method: str, return_url: str, actor: Actor) -> Setup:
    """Confirm the open SetupIntent on-session with one of the patient's saved cards; the caller
    holds the setup's row lock, has recorded the consent, commits, then runs ``settle_setup``."""
    if setup.patient_id != patient.id:
        raise CardSetupError(_l("This is not your appointment."))
    if setup.is_final or not setup.stripe_setup_intent_id or setup.status == "processing":
        raise CardSetupError(_l("This card is already being set up. Please reload the page."))
    card = next((c for c in cards.list_cards(gw, patient) if c.id == payment_method), None)
    if card is None:
        raise cards.NotYourCard()
    # One key per confirmation: a retried request replays; a new try after a failure is new.
    key = setup.key(f"confirm-saved-{card.id}-f{_count(session, setup, 'card_setup.failed')}"
                    f"-c{_count(session, setup, SAVED_CONFIRM_ACTION)}")
    si = gw.confirm_setup_intent(setup.stripe_setup_intent_id, key=key, payment_method=card.id, return_url=return_url)
    _record(session, setup, actor=actor, action=SAVED_CONFIRM_ACTION,
            details={"payment_method": card.id, "brand": card.brand, "last4": card.last4, "status": si.status,
                     "key": key.rsplit(":", 1)[-1]})
    return si


# -- settling: what Stripe says, applied (commits) -------------------------------------------------

def _locked(session: Session, setup_id: int) -> CardSetup | None:
    return session.scalars(
        select(CardSetup).join(CardSetup.appointment).options(contains_eager(CardSetup.appointment))
        .where(CardSetup.id == setup_id).with_for_update(of=[CardSetup, Appointment])
        .execution_options(populate_existing=True)).first()


@domain_errors
def settle_setup(session: Session, setup_id: int, *, source: str, actor: Actor) -> SetupResult:
    """Re-read the SetupIntent and apply it (see the module's docstring); commits."""
    def step():
        setup = _locked(session, setup_id)
        if setup is None:
            session.rollback()
            return SetupResult("pending")
        try:
            result = _apply(session, gateway(), setup, now=_now(), actor=actor, source=source)
        except SetupMismatch as error:
            session.rollback()
            setup = session.get(CardSetup, setup_id)
            _record(session, setup, actor=actor, action="card_setup.mismatch", outcome="failure",
                    reason=str(error), details={"source": source})
            session.commit()
            raise
        session.commit()
        return result

    return retry_transient(session, step)


def _apply(session: Session, gw: StripeGateway, setup: CardSetup, *, now: datetime, actor: Actor,
           source: str) -> SetupResult:
    appointment = setup.appointment
    if not setup.stripe_setup_intent_id:
        return SetupResult("pending")
    si = gw.retrieve_setup_intent(setup.stripe_setup_intent_id)
    check_setup(si, setup)
    previous = setup.status
    message = None
    if si.status == "requires_payment_method" and si.last_error is not None:
        message = _failure(session, setup, si, actor=actor, source=source)
    setup.mirror(si.status)
    session.flush()
    if si.status == "succeeded":
        return _succeeded(session, setup, appointment, si, now=now, actor=actor, source=source)
    if si.status == "canceled":
        return SetupResult("canceled", message=_l("This card setup was canceled. Nothing was charged."))
    if si.status == "requires_action":
        if previous != "requires_action":
            from app.services import settlement        # the hold is extended once, as for a deposit's 3-D Secure
            settlement._extend_hold(session, appointment, now=now, timings=settlement.timings(), actor=actor)
        return SetupResult("requires_action", client_secret=setup.client_secret)
    if si.status == "processing":
        return SetupResult("pending")
    if message:
        return SetupResult("declined", message=message)
    return SetupResult("pending")


def _failure(session: Session, setup: CardSetup, si: Setup, *, actor: Actor, source: str) -> str:
    """Audit a failed confirmation once (``card_setup.failed``); returns the plain-words message."""
    error = si.last_error
    if error.code == "setup_intent_authentication_failure":
        message = AUTH_FAILED
    else:
        message = payments.decline_message(error.code, error.decline_code)
    key = si.latest_attempt or f"{error.code}:{error.decline_code}:{error.payment_method}"
    seen = session.scalar(select(AuditEvent.seq).where(
        AuditEvent.appointment_id == setup.appointment_id, AuditEvent.action == "card_setup.failed",
        AuditEvent.stripe_object_id == si.id, AuditEvent.details["key"].astext == key).limit(1))
    if seen is None:
        _record(session, setup, actor=actor, action="card_setup.failed", outcome="failure",
                details={"code": error.code, "decline_code": error.decline_code, "key": key, "source": source})
    return message


def _succeeded(session: Session, setup: CardSetup, appointment: Appointment, si: Setup, *, now: datetime,
               actor: Actor, source: str) -> SetupResult:
    first = setup.payment_method_id is None
    if first:
        setup.payment_method_id = si.payment_method
        setup.card_brand = si.card_brand
        setup.card_last4 = si.card_last4
        setup.card_exp_month = si.card_exp_month
        setup.card_exp_year = si.card_exp_year
        session.flush()
        _record(session, setup, actor=actor, action="card_setup.succeeded",
                details={"brand": si.card_brand, "last4": si.card_last4, "source": source})
    last4 = setup.card_last4
    if setup.consent_accepted_at is None:
        # Confirmed without the page's consent step (not our page): the card is kept, nothing is booked.
        return SetupResult("consent_needed", message=NO_CONSENT, card_last4=last4)
    written = _write_consent(session, setup, actor=actor)
    if appointment.status in ("canceled", "no_show"):
        return SetupResult("canceled", message=CANCELED, card_last4=last4)
    if _slot_lost_before(session, setup):
        return SetupResult("slot_lost", message=SLOT_LOST, card_last4=last4)
    if appointment.status in ("held", "released"):
        try:
            booking.confirm(session, appointment, actor=actor, now=now,
                            reason=f"card saved for after the visit (card setup {setup.id})")
        except booking.SlotTaken as taken:
            _record(session, setup, actor=actor, action="card_setup.slot_lost", outcome="failure",
                    reason="the slot was booked by someone else before the card was saved")
            return SetupResult("slot_lost", message=SLOT_LOST, nearest=taken.nearest, card_last4=last4)
        _use_card(session, setup, appointment, actor=actor)
    elif appointment.status in BOOKED and (first or written):
        _use_card(session, setup, appointment, actor=actor)
    return SetupResult("confirmed", card_last4=last4)


def _slot_lost_before(session: Session, setup: CardSetup) -> bool:
    return session.scalar(select(AuditEvent.seq).where(
        AuditEvent.appointment_id == setup.appointment_id, AuditEvent.action == "card_setup.slot_lost",
        AuditEvent.details["card_setup_id"].astext == str(setup.id)).limit(1)) is not None


def _write_consent(session: Session, setup: CardSetup, *, actor: Actor) -> bool:
    """The one PaymentConsent of this setup (evidence: wording, version, time, card). True if written now."""
    exists = session.scalar(select(PaymentConsent.id).where(PaymentConsent.card_setup_id == setup.id))
    if exists is not None:
        return False
    consent = PaymentConsent(appointment_id=setup.appointment_id, patient_id=setup.patient_id,
                             kind=CONSENT_KINDS[setup.consent_version], wording=CONSENTS[setup.consent_version],
                             wording_version=setup.consent_version, payment_method_id=setup.payment_method_id,
                             card_brand=setup.card_brand, card_last4=setup.card_last4, card_setup_id=setup.id,
                             accepted_at=setup.consent_accepted_at, accepted_by_id=setup.consent_by_id)
    session.add(consent)
    session.flush()
    _record(session, setup, actor=actor, action="consent.recorded",
            details={"consent_id": consent.id, "kind": consent.kind, "version": consent.wording_version,
                     "last4": consent.card_last4, "accepted_at": consent.accepted_at.isoformat()})
    return True


def _use_card(session: Session, setup: CardSetup, appointment: Appointment, *, actor: Actor) -> None:
    """The booking relies on this card; it becomes the patient's default card if they have none."""
    appointment.payment_method_id = setup.payment_method_id
    patient = session.get(Patient, setup.patient_id)
    if patient.default_payment_method_id is None:
        patient.default_payment_method_id = setup.payment_method_id
        audit.record(session, actor=actor, action="card.default_set", patient_id=patient.id,
                     appointment_id=appointment.id, stripe_object_id=setup.payment_method_id,
                     details={"brand": setup.card_brand, "last4": setup.card_last4, "previous": None,
                              "card_setup_id": setup.id})
    session.flush()


# -- what pages and the sweep read ----------------------------------------------------------------

def current_setup(session: Session, appointment: Appointment) -> CardSetup | None:
    """The appointment's newest CardSetup."""
    return session.scalar(select(CardSetup).where(CardSetup.appointment_id == appointment.id)
                          .order_by(CardSetup.id.desc()).limit(1))


def saved_card_of(session: Session, appointment: Appointment) -> CardSetup | None:
    """The succeeded CardSetup that saved the card the appointment relies on (brand, last 4)."""
    if not appointment.payment_method_id:
        return None
    return session.scalar(select(CardSetup).where(
        CardSetup.appointment_id == appointment.id, CardSetup.status == "succeeded",
        CardSetup.payment_method_id == appointment.payment_method_id).order_by(CardSetup.id.desc()).limit(1))


def card_on_file(session: Session, appointment: Appointment):
    """What a page may say of the card the appointment relies on (``card_last4``): the CardSetup that
    saved it, else (a hybrid deposit's card) the PaymentConsent naming it; None without one."""
    found = saved_card_of(session, appointment)
    if found is not None or not appointment.payment_method_id:
        return found
    return session.scalar(select(PaymentConsent).where(
        PaymentConsent.appointment_id == appointment.id,
        PaymentConsent.payment_method_id == appointment.payment_method_id).order_by(PaymentConsent.id.desc()).limit(1))


def mirrored_setup_events(session: Session, rows) -> list[str]:
    """Of stored events ``(id, type, object_id, ...)``: the ids of ``setup_intent.*`` events whose
    SetupIntent a CardSetup mirrors (webhook processing settles those with ``settle_setup``)."""
    wanted = {row[2]: row[0] for row in rows if row[1].startswith("setup_intent.") and row[2]}
    if not wanted:
        return []
    ours = set(session.scalars(select(CardSetup.stripe_setup_intent_id).where(
        CardSetup.stripe_setup_intent_id.in_(list(wanted)))))
    return [row[0] for row in rows if row[1].startswith("setup_intent.") and row[2] in ours]


def setup_for_intent(session: Session, setup_intent_id: str) -> int | None:
    return session.scalar(select(CardSetup.id).where(CardSetup.stripe_setup_intent_id == setup_intent_id))


@dataclass(frozen=True)
class DueSetups:
    to_settle: list[int]
    creating: list[int]


READD_WATCH = timedelta(days=1)      # how long the sweep watches a card re-add the patient started


def due_setups(session: Session, *, quiet_for) -> DueSetups:
    """Open setups no path looked at for ``quiet_for`` — of held appointments, and card re-adds of
    booked ones whose patient pressed the button (the consent is stored before Stripe.js confirms)
    in the last day (an abandoned page is not polled for ever) — and setups left ``creating`` for
    that long (a crash between storing the row and recording its SetupIntent)."""
    quiet_since = func.now() - quiet_for
    readd = (Appointment.status.in_(BOOKED) & CardSetup.consent_accepted_at.is_not(None)
             & (CardSetup.created_at > func.now() - READD_WATCH))
    to_settle = list(session.scalars(
        select(CardSetup.id).join(CardSetup.appointment)
        .where(CardSetup.status.not_in(SETUP_FINAL + ("creating",)), CardSetup.stripe_setup_intent_id.is_not(None),
               (Appointment.status == "held") | readd, CardSetup.updated_at < quiet_since)
        .order_by(CardSetup.updated_at).limit(200)))
    creating = list(session.scalars(
        select(CardSetup.id).where(CardSetup.status == "creating", CardSetup.stripe_setup_intent_id.is_(None),
                                   CardSetup.created_at < quiet_since).order_by(CardSetup.id).limit(100)))
    return DueSetups(to_settle, creating)


@domain_errors
def reconcile_creating(session: Session, setup_id: int, *, actor: Actor) -> str:
    """A setup stored but never told its SetupIntent: adopt the one Stripe made (found by our
    metadata; an extra copy is left alone: it holds no money and its client secret was never shown),
    or mark the setup canceled when Stripe has none. Then ``settle_setup``. Commits."""
    setup = _locked(session, setup_id)
    if setup is None or setup.status != "creating" or setup.stripe_setup_intent_id:
        session.rollback()
        return "done"
    customer = session.get(Patient, setup.patient_id).stripe_customer_id
    found = gateway().find_setup_intents(customer, "card_setup_uuid", str(setup.uuid)) if customer else []
    if not found:
        setup.mirror("canceled")
        _record(session, setup, actor=actor, action="card_setup.canceled",
                reason="abandoned before Stripe made its SetupIntent")
        session.commit()
        return "abandoned"
    keep = max(found, key=lambda s: (s.status != "canceled", s.status == "succeeded"))
    _adopt(session, setup, keep, actor=actor, details={"reconciled": True, "found": len(found)})
    session.commit()
    settle_setup(session, setup.id, source="sweep", actor=actor)
    return "adopted"
