"""The patient's pay page for a post-visit balance: the one-click link from SMS / email
(``/pay/<token>``) and the signed-in patient's "balance due" (``/appointments/<id>/pay``).

GET of a link only shows a page (link previews fetch links); the patient's tap (POST) grants this
browser that one visit's payment — not a sign-in — and opens the pay page. The page pays the case's
payable attempt (``visit_charges.payable_attempt``: the same PaymentIntent the off-session charge
used when it can still be confirmed): one tap with a saved card (confirmed on-session by the
server; 3-D Secure handed back to the page) or a new card in the Payment Element. The page never
decides: after Stripe.js answers, the server re-reads the intent (``settlement.settle``, which moves
the case through ``visit_charges.after_settle``).

A browser the link granted sees the amount, the date and the way to pay; the itemized statement
(codes and descriptions) is shown to the signed-in patient only."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import phi
from app.access import PUBLIC, access
from app.blueprints import payment_views
from app.extensions import db
from app.models import Appointment, CollectionCase, PaymentAttempt
from app.services import cards, links, settlement, visit_charges
from app.services.audit import Actor
from app.services.gateway import PaymentServiceError, gateway
from app.web import actor as signed_in_actor
from app.web import not_found_audited, now, redirect_htmx, render

bp = Blueprint("pay", __name__)
log = logging.getLogger(__name__)
GRANTS = "pay_grants"
CONFIRMING = _l("We are confirming your payment…")


def actor() -> Actor:
    return g.get("pay_actor") or signed_in_actor()


def _own(appointment_id: int) -> tuple[Appointment, CollectionCase]:
    """The signed-in patient's visit, or one a pay link granted this browser; else 404 (audited)."""
    appointment = db.session.get(Appointment, appointment_id)
    mine = payment_views.signed_in_patient_of(appointment)
    g.pay_actor = payment_views.link_actor(appointment, GRANTS)
    granted = g.pay_actor is not None
    case = visit_charges.case_for_appointment(db.session, appointment_id) if (mine or granted) else None
    if case is None:
        not_found_audited(appointment_id, actor())
    phi.shown(appointment=appointment, actor=g.get("pay_actor"))
    return appointment, case


# -- the one-click link ----------------------------------------------------------------------------

def _invalid(error: links.LinkInvalid):
    db.session.rollback()
    return render("pay/link.html", status=410 if error.kind == "expired" else 404, message=str(error),
                  token=None, case=None, appointment=None)


def _resolve(token: str):
    """The link's row and case (the page shown to the patient it speaks for: PHI, audited)."""
    found, case = visit_charges.resolve_link(db.session, token, now=now())
    phi.shown(appointment=case.appointment, actor=Actor("link", found.user_id, "patient"))
    return found, case


@bp.get("/pay/<token>")
@access(PUBLIC, phi="appointment")
def link(token: str):
    try:
        found, case = _resolve(token)
    except links.LinkInvalid as error:
        return _invalid(error)
    appointment = case.appointment
    return render("pay/link.html", token=token, case=case, appointment=appointment,
                  balance=visit_charges.balance_due_cents(case), tz=appointment.patient.user.timezone)


@bp.post("/pay/<token>")
@access(PUBLIC, phi="appointment")
def link_use(token: str):
    try:
        found, case = _resolve(token)
    except links.LinkInvalid as error:
        return _invalid(error)
    appointment = case.appointment
    visit_charges.link_used(db.session, found, case)
    db.session.commit()
    if not payment_views.signed_in_patient_of(appointment):
        payment_views.grant(GRANTS, appointment.id)
    return redirect_htmx(url_for("pay.show", appointment_id=appointment.id))


# -- the pay page ---------------------------------------------------------------------------------

def _saved_cards(appointment: Appointment) -> list[cards.SavedCard]:
    try:
        return cards.list_cards(gateway(), appointment.patient)
    except PaymentServiceError:
        log.warning("saved cards unavailable for the pay page of %s", appointment.id)
        return []


def _statement(appointment: Appointment):
    """The itemized statement, for the signed-in patient only (a link's browser sees the amounts)."""
    if not payment_views.signed_in_patient_of(appointment):
        return None
    try:
        from app.services import statements
    except ImportError:           # pragma: no cover (statements ship with this issue)
        return None
    return statements.statement(db.session, appointment)


@bp.get("/appointments/<int:appointment_id>/pay")
@access(PUBLIC, phi="appointment")
def show(appointment_id: int):
    appointment, case = _own(appointment_id)
    settings = current_app.config["SETTINGS"]
    context = dict(appointment=appointment, case=case, statement=_statement(appointment),
                   tz=appointment.patient.user.timezone, label=visit_charges.CASE_LABELS.get(case.status, ""),
                   total=case.charge.amount_cents, paid=case.charge.amount_captured_cents,
                   balance=visit_charges.balance_due_cents(case), attempt=None, notice=None)
    if case.status == "paid" or not case.is_open or context["balance"] <= 0:
        db.session.rollback()
        return render("pay/show.html", **context)
    try:
        attempt = visit_charges.payable_attempt(db.session, case, patient=appointment.patient, actor=actor())
    except visit_charges.CollectionsError as error:
        db.session.rollback()
        return render("pay/show.html", **{**context, "notice": str(error)})
    except PaymentServiceError:
        db.session.rollback()
        return render("pay/show.html", status=503, **{**context, "notice": _("We could not reach the payment "
                                                                          "service. Please try again in a moment.")})
    saved = _saved_cards(appointment)
    return render("pay/show.html", **{**context, "attempt": attempt, "balance": attempt.amount_cents,
                                      "saved_cards": saved, "preselected": cards.preselected(saved),
                                      "stripe_js_url": settings.STRIPE_JS_URL,
                                      "publishable_key": settings.STRIPE_PUBLISHABLE_KEY})


def _current(case: CollectionCase) -> PaymentAttempt | None:
    return visit_charges.current_attempt(db.session, case)


def _complete(case: CollectionCase) -> settlement.SyncResult | None:
    """The server re-reads the case's current intent (None: no attempt)."""
    attempt = _current(case)
    if attempt is None:
        return None
    db.session.rollback()
    return settlement.settle(db.session, attempt.id, source="browser", actor=actor())   # it locks what it needs


def _verdict(appointment: Appointment, result: settlement.SyncResult | None):
    if result is None:
        return {"state": "pending", "message": None}
    body = {"state": result.state, "message": result.message}
    if result.state == "confirmed":
        body["redirect"] = url_for("pay.show", appointment_id=appointment.id)
    elif result.state == "canceled":
        body["redirect"] = url_for("pay.show", appointment_id=appointment.id)
    return body


@bp.post("/pay/<int:appointment_id>/complete")
@access(PUBLIC, phi="appointment")
def complete(appointment_id: int):
    """Called by the page after Stripe.js answers: the server re-reads the intent itself."""
    appointment, case = _own(appointment_id)
    return payment_views.settled_json(lambda: _complete(case), lambda result: _verdict(appointment, result),
                                      confirming=CONFIRMING)


@bp.post("/pay/<int:appointment_id>/pay-saved")
@access(PUBLIC, phi="appointment")
def pay_saved(appointment_id: int):
    """One tap with a saved card: the server confirms on-session; 3-D Secure goes back to the page."""
    appointment, case = _own(appointment_id)
    payment_method = (request.form.get("payment_method") or "").strip()[:255]
    attempt = _current(case)
    if attempt is None or attempt.is_final or not attempt.stripe_payment_intent_id:
        return jsonify(state="pending", message=_("No payment is open for this visit. Please reload the page.")), 409
    db.session.rollback()
    try:
        result = settlement.settle(db.session, attempt.id, source="browser", actor=actor())
        if result.state in ("confirmed", "canceled"):
            return jsonify(_verdict(appointment, result))
        visit_charges.pay_saved(db.session, attempt, patient=appointment.patient, payment_method=payment_method,
                                return_url=url_for("pay.browser_return", appointment_id=appointment.id,
                                                   _external=True), actor=actor())
        db.session.commit()
    except (cards.NotYourCard, visit_charges.CollectionsError, PaymentServiceError) as error:
        return payment_views.tap_refused(error, appointment, payment_method, actor=actor, what="pay",
                                         unreachable=_("We could not reach the payment service. "
                                                       "You have not been charged. Please try again."))

    def answer(result: settlement.SyncResult) -> dict:
        body = _verdict(appointment, result)
        if result.state == "requires_action":
            body["client_secret"] = db.session.get(PaymentAttempt, attempt.id).client_secret
        return body
    return payment_views.settled_json(
        lambda: settlement.settle(db.session, attempt.id, source="browser", actor=actor()), answer,
        confirming=CONFIRMING)


@bp.get("/pay/<int:appointment_id>/return")
@access(PUBLIC, phi="appointment")
def browser_return(appointment_id: int):
    """Where Stripe sends the browser after a redirect (3-D Secure): never trusted, re-read."""
    appointment, case = _own(appointment_id)
    payment_views.read_quietly(lambda: _complete(case))
    return redirect(url_for("pay.show", appointment_id=appointment.id), code=303)


# -- "Balance due" on the patient's pages ---------------------------------------------------------

@bp.app_template_global("balances_due")
def balances_due(patient_id: int | None, appointment_id: int | None = None) -> list[dict]:
    """The patient's open post-visit balances (appointment id, amount, words) for a notice + link."""
    if not patient_id:
        return []
    from sqlalchemy import select

    query = (select(CollectionCase).join(Appointment, Appointment.id == CollectionCase.appointment_id)
             .where(Appointment.patient_id == patient_id,
                    CollectionCase.status.in_(("recovering", "collections", "with_agency", "payment_plan")))
             .order_by(CollectionCase.id))
    if appointment_id is not None:
        query = query.where(CollectionCase.appointment_id == appointment_id)
    found = []
    for case in db.session.scalars(query):
        balance = visit_charges.balance_due_cents(case)
        if balance > 0:
            found.append({"appointment_id": case.appointment_id, "balance_cents": balance,
                          "starts_at": case.appointment.starts_at,
                          "url": url_for("pay.show", appointment_id=case.appointment_id)})
    return found
