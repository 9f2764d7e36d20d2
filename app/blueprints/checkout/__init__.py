"""Deposit-to-book checkout: the Payment Element page, completion, confirmation, the visit link."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

import logging

from app import phi
from app.access import AUTHENTICATED, PUBLIC, access
from app.blueprints import payment_views
from app.blueprints.links import GRANTS
from app.extensions import db
from app.models import Appointment
from app.services import audit, cards, hybrid_deposit, payments, settlement, visits
from app.services.gateway import PaymentServiceError, gateway
from app.services.audit import Actor
from app.web import actor as signed_in_actor
from app.web import not_found_audited, now, render


def actor() -> Actor:
    """Who acts: the signed-in patient, or the patient a one-click link speaks for."""
    return g.get("checkout_actor") or signed_in_actor()

bp = Blueprint("checkout", __name__)
log = logging.getLogger(__name__)


def _own(appointment_id: int) -> Appointment:
    """The signed-in patient's appointment, or one a one-click link granted this browser; else 404."""
    appointment = db.session.get(Appointment, appointment_id)
    mine = payment_views.signed_in_patient_of(appointment)
    g.checkout_actor = payment_views.link_actor(appointment, GRANTS)
    if not (mine or g.checkout_actor is not None):
        not_found_audited(appointment_id, actor())
    phi.shown(appointment=appointment, actor=g.get("checkout_actor"))
    return appointment


# Checkout routes: the signed-in patient, or a browser a one-click link granted this one checkout
# (not a sign-in); ``_own`` checks either and answers 404 otherwise.
@bp.get("/checkout/<int:appointment_id>")
@access(PUBLIC, phi="appointment")
def show(appointment_id: int):
    appointment = _own(appointment_id)
    if appointment.payment_timing == "post_visit":        # a card saved, nothing charged now
        return setup.show(appointment)
    if appointment.status in ("confirmed", "checked_in"):
        return redirect(url_for("checkout.done", appointment_id=appointment.id))
    estimate = None
    if appointment.payment_timing == "hybrid":            # the deposit comes from the attached estimate
        estimate = hybrid_deposit.estimate_for(db.session, appointment.id)
        if estimate is None:
            return _needs_intake(appointment)
        if estimate.deposit_cents <= 0:
            return setup.show(appointment)                # no deposit: the card is saved, nothing charged
    try:
        attempt = payments.open_attempt(db.session, appointment=appointment, patient=appointment.patient,
                                        now=now())
        db.session.commit()                       # the attempt's UUID is stored before Stripe hears of it
        payments.create_intent(db.session, gateway(), attempt, patient=appointment.patient,
                               appointment=appointment, actor=actor(), now=now(), timings=settlement.timings())
        db.session.commit()
    except payments.NoEstimate:
        db.session.rollback()
        return _needs_intake(appointment)
    except payments.PaymentRuleError as error:
        db.session.rollback()
        return _ended(appointment, str(error))
    except PaymentServiceError:
        db.session.rollback()
        return render("checkout/ended.html", status=503, appointment=appointment,
                      message=_("We could not reach the payment service. Please try again in a moment."))
    settings = current_app.config["SETTINGS"]
    seconds_left = max(0, int((appointment.hold_expires_at - now()).total_seconds()))
    saved = _saved_cards(appointment)
    return render("checkout/show.html", appointment=appointment, attempt=attempt,
                  stripe_js_url=settings.STRIPE_JS_URL, publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
                  seconds_left=seconds_left, saved_cards=saved, preselected=cards.preselected(saved),
                  estimate=estimate, consent_wording=_(hybrid_deposit.CONSENT_WORDING),
                  consent_version=hybrid_deposit.CONSENT_VERSION)


def _needs_intake(appointment: Appointment):
    """A hybrid hold without an estimate: nothing can be paid until intake gives one (409)."""
    db.session.rollback()
    return render("checkout/needs_intake.html", status=409, appointment=appointment,
                  message=hybrid_deposit.NO_ESTIMATE, intake_url=hybrid_deposit.intake_url(appointment))


def _ended(appointment: Appointment, message: str):
    """The hold is gone: say why in plain words and offer the nearest free times."""
    from app.services import booking

    last = payments.current_attempt(db.session, appointment)
    if last is not None and last.outcome == "slot_lost":
        message = _("Someone else booked this time while you were paying. You have not been charged; "
                    "your card's hold is released.")
    nearest = booking.nearest_free(db.session, provider=appointment.provider, appointment_type=appointment.type,
                                   around=appointment.starts_at, now=now(), count=4)
    return render("checkout/ended.html", status=409, appointment=appointment, message=message, nearest=nearest)


def _signed_in_patient(appointment: Appointment) -> bool:
    """The patient's saved cards (brand and last 4 only) are offered to the patient: signed in, or
    arriving through their own one-click link, which is bound to them and this appointment and
    promises checkout "with the saved card pre-selected" (``_own`` has checked either)."""
    return g.get("checkout_actor") is not None or payment_views.signed_in_patient_of(appointment)


def _saved_cards(appointment: Appointment) -> list[cards.SavedCard]:
    if not _signed_in_patient(appointment):
        return []
    try:
        return cards.list_cards(gateway(), appointment.patient)
    except PaymentServiceError:
        log.warning("saved cards unavailable for checkout %s", appointment.id)
        return []                     # the Payment Element still works


def _remember_card(appointment: Appointment, result: settlement.SyncResult) -> None:
    """A confirmed payment with a card kept on file makes it the default (best effort: the payment stands).
    A hybrid deposit's card is made the default only when the patient has none, by settle itself
    (``hybrid_deposit.after_deposit``), whichever path confirmed it."""
    if result.state != "confirmed" or not _signed_in_patient(appointment) or appointment.payment_timing == "hybrid":
        return
    try:           # a confirmed result always carries its attempt and the intent settle read
        cards.remember_default(db.session, gateway(), result.attempt, patient=appointment.patient,
                               actor=actor(), intent=result.intent)
    except PaymentServiceError:
        log.warning("could not remember the default card for checkout %s", appointment.id)
        db.session.rollback()
        return
    db.session.commit()         # the new default and its audit row, or nothing (ends the read)


@bp.post("/checkout/<int:appointment_id>/save-card")
@access(PUBLIC, phi="appointment")
def save_card(appointment_id: int):
    appointment = _own(appointment_id)
    attempt = payments.current_attempt(db.session, appointment, lock=True)
    if attempt is None or attempt.is_final:
        return jsonify(error=_("No payment is open for this visit.")), 409
    try:
        payments.set_save_card(db.session, gateway(), attempt, request.form.get("save") == "1")
    except payments.PaymentRuleError as error:
        db.session.rollback()
        return jsonify(error=str(error), save_card=attempt.save_card), 409
    except PaymentServiceError:
        db.session.rollback()
        return jsonify(error=_("We could not update the payment. Please try again.")), 503
    db.session.commit()
    return jsonify(save_card=attempt.save_card)


def _hybrid_consent(appointment: Appointment, attempt):
    """A hybrid deposit's consent box, ticked: recorded (an audit row) before the card is confirmed.
    None when recorded (the caller commits); otherwise the JSON answer to send (rolled back)."""
    if request.form.get("consent") != "1":
        db.session.rollback()
        return jsonify(state="consent_needed", message=hybrid_deposit.NO_CONSENT), 422
    try:
        hybrid_deposit.accept_consent(db.session, appointment, attempt=attempt, user_id=actor().id,
                                      version=(request.form.get("version") or "")[:32], now=now(), actor=actor())
    except hybrid_deposit.HybridError as error:
        db.session.rollback()
        return jsonify(state="consent_needed", message=str(error)), 409
    return None


@bp.post("/checkout/<int:appointment_id>/hybrid-consent")
@access(PUBLIC, phi="appointment")
def hybrid_consent(appointment_id: int):
    """The patient ticked the balance consent and pressed pay: recorded before Stripe.js confirms."""
    appointment = _own(appointment_id)
    if appointment.payment_timing != "hybrid":
        return jsonify(state="pending", message=_("This visit needs no such agreement.")), 409
    attempt = payments.current_attempt(db.session, appointment)
    if attempt is None or not attempt.stripe_payment_intent_id:
        db.session.rollback()
        return jsonify(state="pending", message=_("Please reload the page.")), 409
    refused = _hybrid_consent(appointment, attempt)
    if refused is not None:
        return refused
    db.session.commit()
    return jsonify(state="consented")


CONFIRMING = _l("We are confirming your payment…")
TAP_UNREACHABLE = _l("We could not reach the payment service. You have not been charged. Please try again.")


def _result_json(appointment: Appointment, result: settlement.SyncResult):
    body = {"state": result.state, "message": result.message}
    if result.state == "confirmed":
        body["redirect"] = url_for("checkout.done", appointment_id=appointment.id)
    elif result.state in ("slot_lost", "canceled"):
        body["redirect"] = url_for("checkout.show", appointment_id=appointment.id)
    return body


def _complete(appointment: Appointment) -> settlement.SyncResult | None:
    attempt = payments.current_attempt(db.session, appointment)
    if attempt is None:
        return None
    return settlement.settle(db.session, attempt.id, source="browser", actor=actor())   # it locks what it needs


@bp.post("/checkout/<int:appointment_id>/complete")
@access(PUBLIC, phi="appointment")
def complete(appointment_id: int):
    """Called by the page after Stripe.js answers: the server re-reads the intent itself."""
    appointment = _own(appointment_id)

    def answer(result: settlement.SyncResult) -> dict:
        _remember_card(appointment, result)
        return _result_json(appointment, result)
    return payment_views.settled_json(lambda: _complete(appointment), answer, confirming=CONFIRMING)


@bp.post("/checkout/<int:appointment_id>/pay-saved")
@access(PUBLIC, phi="appointment")
def pay_saved(appointment_id: int):
    """One tap with a saved card: the server confirms on-session; 3-D Secure goes back to the page."""
    appointment = _own(appointment_id)
    payment_method = (request.form.get("payment_method") or "").strip()[:255]
    attempt = payments.current_attempt(db.session, appointment)
    if attempt is None or not attempt.stripe_payment_intent_id:
        return jsonify(state="pending", message=_("No payment is open for this visit. Please reload the page.")), 409
    if appointment.payment_timing == "hybrid" and not attempt.is_final:
        refused = _hybrid_consent(appointment, attempt)     # the consent first, as the typed card's page does
        if refused is not None:
            return refused
        db.session.commit()
    db.session.rollback()
    try:
        # What Stripe says now first: an earlier tap may have paid, or left a decline to record.
        result = settlement.settle(db.session, attempt.id, source="browser", actor=actor())
        if result.state in ("confirmed", "slot_lost", "canceled"):
            _remember_card(appointment, result)
            return jsonify(_result_json(appointment, result))
        attempt = db.session.get(type(attempt), attempt.id, with_for_update=True, populate_existing=True)
        cards.pay_with_saved_card(
            db.session, gateway(), attempt, patient=appointment.patient, payment_method=payment_method,
            return_url=url_for("checkout.browser_return", appointment_id=appointment.id, _external=True),
            now=now(), actor=actor())
        db.session.commit()
    except (cards.NotYourCard, cards.CardRuleError, PaymentServiceError) as error:
        return payment_views.tap_refused(error, appointment, payment_method, actor=actor, what="pay",
                                         unreachable=TAP_UNREACHABLE)

    def answer(result: settlement.SyncResult) -> dict:
        body = _result_json(appointment, result)
        if result.state == "requires_action":
            body["client_secret"] = attempt.client_secret
        _remember_card(appointment, result)
        return body
    return payment_views.settled_json(
        lambda: settlement.settle(db.session, attempt.id, source="browser", actor=actor()), answer,
        confirming=CONFIRMING)


@bp.get("/checkout/<int:appointment_id>/return")
@access(PUBLIC, phi="appointment")
def browser_return(appointment_id: int):
    """Where Stripe sends the browser after a redirect (3-D Secure): never trusted, re-read."""
    appointment = _own(appointment_id)
    result = payment_views.read_quietly(lambda: _complete(appointment))
    if result is not None:
        _remember_card(appointment, result)
    if result is not None and result.state == "confirmed":
        return redirect(url_for("checkout.done", appointment_id=appointment.id), code=303)
    return redirect(url_for("checkout.show", appointment_id=appointment.id), code=303)


@bp.get("/checkout/<int:appointment_id>/done")
@access(PUBLIC, phi="appointment")
def done(appointment_id: int):
    appointment = _own(appointment_id)
    attempt = payments.current_attempt(db.session, appointment)
    if appointment.status not in ("confirmed", "checked_in", "completed"):
        return redirect(url_for("checkout.show", appointment_id=appointment.id))
    return render("checkout/done.html", appointment=appointment, attempt=attempt)


@bp.get("/visits/<int:appointment_id>/join")
@access(AUTHENTICATED, phi="visit")
def join(appointment_id: int):
    """The visit link: who you are is checked; opens from VISIT_OPENS_BEFORE the start."""
    appointment = db.session.get(Appointment, appointment_id)
    if appointment is None or not visits.may_join(appointment, current_user):
        audit.record(db.session, actor=actor(), action="visit.join_denied", outcome="failure",
                     details={"appointment_id": appointment_id})
        db.session.commit()
        abort(403)
    settings = current_app.config["SETTINGS"]
    phi.shown(appointment=appointment)
    state = visits.join_state(appointment, now=now(), opens_before=settings.VISIT_OPENS_BEFORE)
    if state != "open":
        return render("checkout/visit_wait.html", appointment=appointment, state=state,
                      opens_at=appointment.starts_at - settings.VISIT_OPENS_BEFORE)
    audit.record(db.session, actor=actor(), action="visit.joined", appointment_id=appointment.id,
                 patient_id=appointment.patient_id)
    if current_user.role == "provider" and appointment.status in ("confirmed", "checked_in", "completed"):
        from app.services import emr          # the provider starting the visit opens its note (checks in)

        emr.open_encounter(db.session, appointment, actor=actor(), user=current_user, now=now(), source="telehealth")
    db.session.commit()
    return redirect(visits.room_url(appointment, base=settings.TELEHEALTH_BASE_URL,
                                    local=url_for("checkout.room", room=appointment.telehealth_room)))


@bp.get("/visits/room/<room>")
@access(AUTHENTICATED, phi="visit")
def room(room: str):
    """The local stand-in for a video room (TELEHEALTH_BASE_URL unset)."""
    appointment = visits.by_room(db.session, room)
    if appointment is None or not visits.may_join(appointment, current_user):
        abort(403)
    phi.shown(appointment=appointment)
    return render("checkout/room.html", appointment=appointment)


@bp.app_template_global("hybrid_estimate")
def hybrid_estimate(appointment: Appointment):
    """The estimate a hybrid appointment's deposit comes from (None: none attached, or not hybrid)."""
    if appointment is None or appointment.payment_timing != "hybrid":
        return None
    return hybrid_deposit.estimate_for(db.session, appointment.id)


@bp.app_template_global("hybrid_intake_url")
def hybrid_intake_url(appointment: Appointment) -> str:
    return hybrid_deposit.intake_url(appointment)


from app.blueprints.checkout import setup  # noqa: E402  (post-visit: save a card, nothing charged; on bp)
