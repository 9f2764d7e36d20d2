"""What the card pages' views share (``checkout``: pay to book; ``checkout.setup``: save a card for a
post-visit visit; ``pay``: a post-visit balance): who may use the page (the signed-in patient, or a
browser a one-click link granted), the JSON answer of a "complete" call, the refusals of a saved
card's tap, and reading Stripe quietly when the browser comes back from it. Each blueprint keeps its
own flow (what it settles, where it sends the browser)."""
from __future__ import annotations

from typing import Callable, TypeVar

from flask import jsonify, session
from flask_login import current_user

from app.extensions import db
from app.models import Appointment
from app.services import cards
from app.services.audit import Actor
from app.services.gateway import PaymentServiceError

R = TypeVar("R")


def signed_in_patient_of(appointment: Appointment | None) -> bool:
    """The viewer is signed in as the appointment's patient."""
    return (appointment is not None and current_user.is_authenticated and current_user.role == "patient"
            and appointment.patient_id == current_user.patient.id)


def grant(grants_key: str, appointment_id: int) -> None:
    """A one-click link's tap: this browser may use the appointment's page (the last five kept, in the
    session under ``grants_key``; not a sign-in)."""
    grants = [a for a in session.get(grants_key, []) if a != appointment_id][-4:]
    session[grants_key] = grants + [appointment_id]


def link_actor(appointment: Appointment | None, grants_key: str) -> Actor | None:
    """The patient a one-click link speaks for, when it granted this signed-out browser the
    appointment (the ids kept under ``grants_key`` in the session; not a sign-in); else None."""
    if appointment is None or current_user.is_authenticated or appointment.id not in session.get(grants_key, []):
        return None
    return Actor("link", appointment.patient.user_id, "patient")


def settled_json(read: Callable[[], R | None], answer: Callable[[R], dict], *, confirming: str):
    """The JSON answer once the server has re-read Stripe: ``read()`` settles (None: nothing is
    open, 409), ``answer(result)`` is the body; Stripe unreachable: still pending (202, ``confirming``),
    the page asks again."""
    try:
        result = read()
    except PaymentServiceError:
        db.session.rollback()
        return jsonify(state="pending", message=confirming), 202
    if result is None:
        return jsonify(state="pending", message=None), 409
    return jsonify(answer(result))


def read_quietly(read: Callable[[], R | None]) -> R | None:
    """What ``read()`` settles, or None when the payment service cannot be reached (rolled back):
    the browser back from Stripe is sent on either way."""
    try:
        return read()
    except PaymentServiceError:
        db.session.rollback()
        return None


def tap_refused(error: Exception, appointment: Appointment, payment_method: str, *,
                actor: Callable[[], Actor], what: str, unreachable: str):
    """The JSON answer to a saved card's tap that did not go through (after a rollback): not the
    patient's card (404, audited and committed), the payment service unreachable (503), or the
    flow's own rule (409, its plain words). ``actor``: the blueprint's, asked after the rollback."""
    db.session.rollback()
    if isinstance(error, cards.NotYourCard):
        cards.refuse(db.session, patient=appointment.patient, payment_method=payment_method,
                     actor=actor(), what=what, appointment_id=appointment.id)
        db.session.commit()
        return jsonify(state="declined", message=str(error)), 404
    if isinstance(error, PaymentServiceError):
        return jsonify(state="error", message=unreachable), 503
    return jsonify(state="declined", message=str(error)), 409
