"""The patient's saved cards: see them (brand, last 4, expiry) and remove one (detached in Stripe)."""
from __future__ import annotations

import logging

from flask import abort, flash, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from app.access import access
from app.blueprints.account.views import bp
from app.extensions import db
from app.services import cards
from app.services.gateway import PaymentServiceError, gateway
from app.web import actor, redirect_htmx, render

log = logging.getLogger(__name__)


class RemoveCardForm(FlaskForm):
    pass


def _cards_page(status: int = 200, *, error: str | None = None):
    patient = current_user.patient
    unavailable = False
    try:
        found = cards.list_cards(gateway(), patient)
    except PaymentServiceError:
        log.warning("saved cards unavailable for patient %s", patient.id)
        found, unavailable = [], True
    # Post-visit visits: the ones a card is charged to after the visit (removing it asks for another),
    # and the ones left with no card ("card needed").
    relying = {card.id: cards.relying_on(db.session, patient, card.id) for card in found}
    return render("account/cards.html", status=status, cards=found, form=RemoveCardForm(formdata=None),
                  unavailable=unavailable, error=error, relying=relying,
                  needing=cards.needing_a_card(db.session, patient))


@bp.get("/account/cards")
@access("patient", phi="payment_methods")
def cards_page():
    return _cards_page()


@bp.post("/account/cards/<payment_method>/remove")
@access("patient", phi="payment_methods")
def remove_card(payment_method: str):
    form = RemoveCardForm()
    if not form.validate_on_submit():
        return _cards_page(422, error=_("Your form expired. Reload the page and try again."))
    patient = current_user.patient
    try:
        card = cards.remove_card(db.session, gateway(), patient=patient, payment_method=payment_method,
                                 actor=actor())
    except cards.NotYourCard:
        db.session.rollback()
        cards.refuse(db.session, patient=patient, payment_method=payment_method, actor=actor(), what="remove")
        db.session.commit()
        abort(404)
    except PaymentServiceError:
        db.session.rollback()
        return _cards_page(503, error=_("We could not reach the payment service. Your card was not removed; "
                                        "please try again in a moment."))
    db.session.commit()
    flash(_("%(card)s was removed. It can no longer be used for payments.", card=card.label), "success")
    return redirect_htmx(url_for("account.cards_page"))
