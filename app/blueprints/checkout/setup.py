"""Post-visit checkout: save a card (a SetupIntent, nothing charged), agree to the charge after the
visit, and the booking confirms. Also the "card needed" page of a booked post-visit or hybrid visit
(``/appointments/<id>/card``), which is the same page without the booking step.

``checkout.show`` hands a post-visit appointment to ``show`` here. The page never decides the
outcome: after Stripe.js answers, ``setup-complete`` re-reads the SetupIntent
(``card_setup.settle_setup``), as the webhook and the sweep do.
"""
from __future__ import annotations

import logging

from flask import current_app, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from app.access import PUBLIC, access
from app.blueprints import payment_views
from app.blueprints.checkout import _ended, _own, _saved_cards, actor, bp
from app.extensions import db
from app.models import Appointment, CardSetup
from app.models.appointment import BOOKED
from app import phi
from app.services import card_setup, cards
from app.services.gateway import PaymentServiceError, gateway
from app.web import not_found_audited, now, render

log = logging.getLogger(__name__)
UNREACHABLE = _l("We could not reach the payment service. Nothing was charged. Please try again in a moment.")
CONFIRMING = _l("We are confirming your card…")


def _mode() -> str:
    """Where the page came from: booking (``book``) or adding a card to a booked visit (``card``)."""
    return "card" if (request.values.get("then") or "") == "card" else "book"


def _done_url(appointment: Appointment, mode: str) -> str:
    if mode == "card":
        return url_for("booking.appointment", appointment_id=appointment.id)
    return url_for("checkout.done", appointment_id=appointment.id)


def _page_url(appointment: Appointment, mode: str) -> str:
    if mode == "card":
        return url_for("checkout.add_card", appointment_id=appointment.id)
    return url_for("checkout.show", appointment_id=appointment.id)


def show(appointment: Appointment):
    """``/checkout/<id>`` of a post-visit appointment (``checkout.show`` has checked it is the viewer's)."""
    if appointment.status in BOOKED:
        return redirect(url_for("checkout.done", appointment_id=appointment.id))
    return _setup_page(appointment, "book")


def _setup_page(appointment: Appointment, mode: str):
    try:
        setup = card_setup.open_setup(db.session, appointment=appointment, patient=appointment.patient, now=now())
        db.session.commit()                       # the setup's UUID is stored before Stripe hears of it
        card_setup.create_setup_intent(db.session, gateway(), setup, patient=appointment.patient,
                                       appointment=appointment, actor=actor())
        db.session.commit()
    except card_setup.CardSetupError as error:
        db.session.rollback()
        if mode == "book":
            last = card_setup.current_setup(db.session, appointment)
            lost = last is not None and card_setup._slot_lost_before(db.session, last)
            return _ended(appointment, card_setup.SLOT_LOST if lost else str(error))
        return render("checkout/setup.html", status=409, appointment=appointment, mode=mode, notice=str(error))
    except PaymentServiceError:
        db.session.rollback()
        return render("checkout/ended.html", status=503, appointment=appointment, message=UNREACHABLE)
    settings = current_app.config["SETTINGS"]
    seconds_left = 0
    if appointment.status == "held" and appointment.hold_expires_at:
        seconds_left = max(0, int((appointment.hold_expires_at - now()).total_seconds()))
    saved = _saved_cards(appointment)
    version, wording = card_setup.consent_for(appointment)     # post-visit, or a zero-deposit hybrid visit
    return render("checkout/setup.html", appointment=appointment, setup=setup, mode=mode,
                  stripe_js_url=settings.STRIPE_JS_URL, publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
                  seconds_left=seconds_left, saved_cards=saved, preselected=cards.preselected(saved),
                  consent_wording=_(wording), consent_version=version,
                  current_card=card_setup.card_on_file(db.session, appointment))


def _result_json(appointment: Appointment, result: card_setup.SetupResult, mode: str) -> dict:
    body = {"state": result.state, "message": result.message}
    if result.state == "confirmed":
        body["redirect"] = _done_url(appointment, mode)
    elif result.state in ("slot_lost", "canceled"):
        body["redirect"] = _page_url(appointment, mode)
    elif result.state == "requires_action" and result.client_secret:
        body["client_secret"] = result.client_secret
    return body


def _open_setup_of(appointment: Appointment, *, lock: bool = False) -> CardSetup | None:
    setup = card_setup.current_setup(db.session, appointment)
    if setup is not None and lock:
        setup = db.session.get(CardSetup, setup.id, with_for_update=True, populate_existing=True)
    return setup


def _consent(setup: CardSetup):
    """The consent box, ticked: recorded on the setup (before the card is confirmed). None when
    recorded; otherwise the JSON answer to send."""
    if request.form.get("consent") != "1":
        db.session.rollback()
        return jsonify(state="consent_needed", message=card_setup.NO_CONSENT), 422
    try:
        card_setup.accept_consent(db.session, setup, user=actor().id, now=now(),
                                  version=(request.form.get("version") or "")[:32])
    except card_setup.CardSetupError as error:
        db.session.rollback()
        return jsonify(state="consent_needed", message=str(error)), 409
    return None


@bp.post("/checkout/<int:appointment_id>/setup-consent")
@access(PUBLIC, phi="appointment")
def setup_consent(appointment_id: int):
    """The patient ticked the consent box and submitted: recorded before Stripe.js confirms the card."""
    appointment = _own(appointment_id)
    setup = _open_setup_of(appointment, lock=True)
    if setup is None or setup.is_final or not setup.stripe_setup_intent_id:
        db.session.rollback()
        return jsonify(state="pending", message=_("Please reload the page.")), 409
    refused = _consent(setup)
    if refused is not None:
        return refused
    db.session.commit()
    return jsonify(state="consented")


def _complete(appointment: Appointment) -> card_setup.SetupResult | None:
    setup = card_setup.current_setup(db.session, appointment)
    if setup is None:
        return None
    return card_setup.settle_setup(db.session, setup.id, source="browser", actor=actor())   # it locks and commits


@bp.post("/checkout/<int:appointment_id>/setup-complete")
@access(PUBLIC, phi="appointment")
def setup_complete(appointment_id: int):
    """Called by the page after Stripe.js answers: the server re-reads the SetupIntent itself."""
    appointment = _own(appointment_id)
    return payment_views.settled_json(lambda: _complete(appointment),
                                      lambda result: _result_json(appointment, result, _mode()),
                                      confirming=CONFIRMING)


@bp.post("/checkout/<int:appointment_id>/setup-saved")
@access(PUBLIC, phi="appointment")
def setup_saved(appointment_id: int):
    """One tap on a saved card: the server confirms the SetupIntent on-session with it; 3-D Secure,
    when the bank asks, goes back to the page (its client secret), then ``setup-complete``."""
    appointment = _own(appointment_id)
    mode = _mode()
    payment_method = (request.form.get("payment_method") or "").strip()[:255]
    setup = _open_setup_of(appointment, lock=True)
    if setup is None or not setup.stripe_setup_intent_id:
        db.session.rollback()
        return jsonify(state="pending", message=_("Please reload the page.")), 409
    if not setup.is_final:
        refused = _consent(setup)
        if refused is not None:
            return refused
    db.session.commit()
    try:
        # What Stripe says now first: an earlier tap may have saved the card, or left a decline to record.
        result = card_setup.settle_setup(db.session, setup.id, source="browser", actor=actor())
        if result.state in ("confirmed", "slot_lost", "canceled", "consent_needed"):
            return jsonify(_result_json(appointment, result, mode))
        setup = db.session.get(CardSetup, setup.id, with_for_update=True, populate_existing=True)
        card_setup.confirm_saved_card(
            db.session, gateway(), setup, patient=appointment.patient, payment_method=payment_method,
            return_url=url_for("checkout.setup_return", appointment_id=appointment.id, then=mode, _external=True),
            actor=actor())
        db.session.commit()
    except (cards.NotYourCard, card_setup.CardSetupError, PaymentServiceError) as error:
        return payment_views.tap_refused(error, appointment, payment_method, actor=actor, what="set up",
                                         unreachable=UNREACHABLE)
    return payment_views.settled_json(
        lambda: card_setup.settle_setup(db.session, setup.id, source="browser", actor=actor()),
        lambda result: _result_json(appointment, result, mode), confirming=CONFIRMING)


@bp.get("/checkout/<int:appointment_id>/setup-return")
@access(PUBLIC, phi="appointment")
def setup_return(appointment_id: int):
    """Where Stripe sends the browser after a redirect (3-D Secure): never trusted, re-read."""
    appointment = _own(appointment_id)
    mode = _mode()
    result = payment_views.read_quietly(lambda: _complete(appointment))
    if result is not None and result.state == "confirmed":
        return redirect(_done_url(appointment, mode), code=303)
    return redirect(_page_url(appointment, mode), code=303)


@bp.get("/appointments/<int:appointment_id>/card")
@access("patient", phi="appointment")
def add_card(appointment_id: int):
    """"Card needed": the patient saves a card for a booked post-visit or hybrid visit (no booking
    change); a hybrid visit's card is the one its balance is charged to after the insurer answers."""
    appointment = db.session.get(Appointment, appointment_id)
    if appointment is None or appointment.patient_id != current_user.patient.id:
        not_found_audited(appointment_id)
    phi.shown(appointment=appointment)
    if appointment.payment_timing not in cards.CARD_TIMINGS:
        return render("checkout/setup.html", appointment=appointment, mode="card",
                      notice=_("This visit was paid at booking: it needs no card on file."))
    if appointment.status not in card_setup.REBOOK_STATUSES:
        if appointment.status == "held":
            return redirect(url_for("checkout.show", appointment_id=appointment.id))
        return render("checkout/setup.html", appointment=appointment, mode="card",
                      notice=_("This visit is not booked, so it needs no card."))
    return _setup_page(appointment, "card")


# -- what other pages show ------------------------------------------------------------------------

@bp.app_template_global("saved_card_for")
def saved_card_for(appointment: Appointment) -> CardSetup | None:
    """The CardSetup of the card a post-visit appointment relies on (brand, last 4), or None."""
    return card_setup.saved_card_of(db.session, appointment)


@bp.app_template_global("card_on_file")
def card_on_file(appointment: Appointment):
    """The card (``card_last4``) a post-visit or hybrid appointment relies on, or None."""
    return card_setup.card_on_file(db.session, appointment)


@bp.app_template_global("card_needed")
def card_needed(appointment: Appointment) -> bool:
    """A post-visit visit (booked or with an unpaid charge) or a hybrid one (booked, awaiting its
    insurer's answer or with an unpaid balance) that has no card to charge."""
    return cards.needs_card(db.session, appointment)
