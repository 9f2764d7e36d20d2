"""The patient's receipt for an appointment's payments, and the payment state
the dashboards show (template globals, so any page can show it)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.access import access
from app.blueprints.booking import _own_appointment, bp
from app.extensions import db
from app.models import Charge, Refund
from app.services import refunds
from app.web import render


@dataclass(frozen=True)
class ReceiptLine:
    charge: Charge
    captured_cents: int
    captured_at: object
    card_brand: str | None
    card_last4: str | None
    payment_intent: str | None
    refunds: list[Refund]

    @property
    def refunded_cents(self) -> int:
        return sum(r.amount_cents for r in self.refunds)

    @property
    def net_cents(self) -> int:
        return self.captured_cents - self.refunded_cents


@bp.get("/appointments/<int:appointment_id>/receipt")
@access("patient", phi="receipt")
def receipt(appointment_id: int):
    appointment = _own_appointment(appointment_id)
    charges = db.session.scalars(select(Charge).where(Charge.appointment_id == appointment.id,
                                                      Charge.amount_captured_cents > 0).order_by(Charge.id)).all()
    by_charge: dict[int, list[Refund]] = {}
    for r in refunds.refunds_of(db.session, [c.id for c in charges]):
        if r.status in ("pending", "succeeded"):
            by_charge.setdefault(r.charge_id, []).append(r)
    lines = []
    for charge in charges:
        attempt = refunds.captured_attempt(db.session, charge)
        intent_id = attempt.stripe_payment_intent_id if attempt else None
        # The card is stored on the attempt when the payment completes: a receipt never calls Stripe.
        lines.append(ReceiptLine(charge, charge.amount_captured_cents, attempt.captured_at if attempt else None,
                                 attempt.card_brand if attempt else None, attempt.card_last4 if attempt else None,
                                 intent_id, by_charge.get(charge.id, [])))
    return render("booking/receipt.html", appointment=appointment, lines=lines,
                  total_net=sum(line.net_cents for line in lines),
                  total_refunded=sum(line.refunded_cents for line in lines))


@bp.app_template_global("payment_states")
def payment_states(appointments) -> dict:
    """{appointment id: PaymentState} for a list of appointments (a fixed number of queries)."""
    return refunds.payment_states(db.session, appointments)


@bp.app_template_global("payment_state")
def payment_state(appointment):
    return refunds.payment_states(db.session, [appointment])[appointment.id]


@bp.app_template_global("status_label")
def status_label(status: str) -> str:
    """An appointment's status in words, in the viewer's language ("checked in", "canceled")."""
    from flask_babel import gettext as _

    words = {"held": _("held"), "confirmed": _("confirmed"), "checked_in": _("checked in"),
             "completed": _("completed"), "canceled": _("canceled"), "no_show": _("no show"),
             "released": _("released")}
    return words.get(status) or (status or "").replace("_", " ")
