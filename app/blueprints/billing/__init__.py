"""Billing pages (billing and admin): recent payments (with where each post-visit charge stands),
one payment with its refunds, and the refund form (amount, Stripe's reason, the clinical reason).
The collections worklist of post-visit charges is app/blueprints/billing/collections.py (on bp)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flask import Blueprint, abort, flash, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from app import phi
from app.access import access
from app.blueprints.forms import positive_dollars
from app.blueprints.stepup import require_recent_mfa
from app.extensions import db
from app.models import Appointment, Charge, Patient, Refund, User
from app.services import refunds, settlement, visit_status
from app.services.gateway import PaymentServiceUnavailable
from app.web import actor, redirect_htmx, render

bp = Blueprint("billing", __name__, url_prefix="/billing")

STRIPE_REASONS = [SelectChoice("requested_by_customer", "Requested by the patient"),
                  SelectChoice("duplicate", "Duplicate payment"),
                  SelectChoice("fraudulent", "Fraudulent")]
_DOLLARS = re.compile(r"^\d{1,7}(\.\d{1,2})?$")


def dollars_to_cents(text: str) -> int:
    cleaned = (text or "").strip().replace("$", "").replace(",", "")
    if not _DOLLARS.match(cleaned):
        raise ValueError("Enter an amount in dollars, like 25 or 25.50.")
    try:
        return int(Decimal(cleaned) * 100)
    except InvalidOperation:
        raise ValueError("Enter an amount in dollars, like 25 or 25.50.") from None


class RefundForm(FlaskForm):
    amount = StringField("Amount to refund (USD)", validators=[DataRequired("Enter the amount to refund."),
                                                               positive_dollars("The refund")])
    stripe_reason = SelectField("Reason sent to Stripe", choices=STRIPE_REASONS)
    clinical_reason = TextAreaField("Clinical reason", validators=[
        DataRequired("Give the clinical reason for this refund."), Length(max=1000)])

    cents: int | None = None                  # set by positive_dollars


def _charge_or_404(charge_id: int) -> Charge:
    charge = db.session.get(Charge, charge_id)
    if charge is None:
        abort(404)
    return charge


def _payment_context(charge: Charge) -> dict:
    appointment = db.session.get(Appointment, charge.appointment_id)
    phi.shown(appointment=appointment, record={"charge_id": charge.id})
    rows = refunds.refunds_of(db.session, [charge.id])
    people = {u.id: u for u in db.session.scalars(select(User).where(
        User.id.in_({r.authorized_by_id for r in rows if r.authorized_by_id})))} if rows else {}
    return dict(charge=charge, appointment=appointment, refunds=rows, people=people,
                refundable=refunds.refundable_cents(charge), attempt=refunds.captured_attempt(db.session, charge))


@bp.get("/payments")
@access("billing", "admin", phi="payments")
def payments():
    charges = db.session.scalars(
        select(Charge).options(selectinload(Charge.attempts),
                               selectinload(Charge.appointment).selectinload(Appointment.patient)
                               .selectinload(Patient.user))
        .order_by(Charge.created_at.desc(), Charge.id.desc()).limit(100)).all()
    phi.shown(patient_ids=[c.appointment.patient_id for c in charges if c.appointment is not None])
    by_charge: dict[int, list[Refund]] = {}
    for r in refunds.refunds_of(db.session, [c.id for c in charges]):
        by_charge.setdefault(r.charge_id, []).append(r)
    states = visit_status.visit_states(db.session, {c.appointment_id for c in charges})
    return render("billing/payments.html", charges=charges, refunds_by_charge=by_charge, visit_states=states)


@bp.get("/payments/<int:charge_id>")
@access("billing", "admin", phi="payment")
def payment(charge_id: int):
    charge = _charge_or_404(charge_id)
    return render("billing/payment.html", block="refund_form", form=RefundForm(), notice=None,
                  **_payment_context(charge))


@bp.post("/payments/<int:charge_id>/refunds")
@access("billing", "admin", phi="payment")
@require_recent_mfa           # step-up: a code from the last STEP_UP_MAX_AGE (app/blueprints/stepup.py)
def refund(charge_id: int):
    charge = _charge_or_404(charge_id)
    form = RefundForm()
    if not form.validate_on_submit():
        return render("billing/payment.html", block="refund_form", status=422, form=form, notice=None,
                      **_payment_context(charge))
    authorizer = db.session.get(User, current_user.id)
    try:
        done = settlement.issue_refund(db.session, charge=charge, amount_cents=form.cents, stripe_reason=form.stripe_reason.data,
                     clinical_reason=form.clinical_reason.data, policy="billing", authorized_by=authorizer,
                     actor=actor())
    except refunds.RefundError as error:
        db.session.rollback()
        charge = _charge_or_404(charge_id)
        return render("billing/payment.html", block="refund_form", status=422, form=form, notice=str(error),
                      **_payment_context(charge))
    except PaymentServiceUnavailable:
        flash("Stripe could not be reached. The refund is saved and will be sent automatically.", "info")
        return redirect_htmx(url_for("billing.payment", charge_id=charge_id))
    flash(f"Refunded {refunds.money(done.amount_cents)}.", "success")
    return redirect_htmx(url_for("billing.payment", charge_id=charge_id))


from app.blueprints.billing import collections  # noqa: E402,F401  (the collections worklist, on bp)
from app.blueprints.billing import claims  # noqa: E402,F401  (claims, remittances and manual EOBs, on bp)
from app.blueprints.billing import disputes  # noqa: E402,F401  (disputes: worklist, evidence review, on bp)
