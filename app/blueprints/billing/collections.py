"""Billing's collections worklist (billing and admin): the post-visit charges that were not paid
(recovering, in collections, with the agency, on a payment plan) and those written off, each with
why it failed, the retries done and the next one, and the moves billing makes:

    send a final notice · mark sent to a collections agency · set up a payment plan (2..24
    monthly instalments) · write off (a reason; the signed-in billing/admin user is the approver;
    step-up MFA, like refunds)

Each move is its own POST (htmx: the case's card comes back), calls one service of
app/services/visit_charges.py and commits once. A move the case's state refuses answers with the
service's plain message (409) and changes nothing; a form that does not validate answers 422.
"""
from __future__ import annotations

from dataclasses import dataclass
from flask import abort, flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import IntegerField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from app import phi
from app.access import access
from app.blueprints.billing import bp
from app.blueprints.stepup import require_recent_mfa
from app.extensions import db
from app.models import Appointment, Charge, CollectionCase, Patient, User
from app.models.state import Ignored, InvalidTransition
from app.services import DomainError, visit_charges, visit_status
from app.web import actor, is_htmx, now, redirect_htmx, render

# What the filter shows; "open" (the worklist) by default.
FILTERS = {
    "open": ("Open", ("recovering", "collections", "with_agency", "payment_plan")),
    "failed": ("Failed", ("recovering",)),
    "collections": ("In collections", ("collections", "with_agency", "payment_plan")),
    "written_off": ("Written off", ("written_off",)),
    "all": ("All", None),
}
LABELS = getattr(visit_charges, "CASE_LABELS", {})
LIMIT = 200


class PlanForm(FlaskForm):
    instalments = IntegerField("Monthly instalments", validators=[
        InputRequired("Enter the number of monthly instalments (2 to 24)."),
        NumberRange(min=2, max=24, message="A payment plan has 2 to 24 monthly instalments.")])


class WriteOffForm(FlaskForm):
    reason = TextAreaField("Reason for the write-off", validators=[
        DataRequired("Give the reason for writing this balance off."), Length(max=1000)])


class ActionForm(FlaskForm):
    """A move without fields (final notice, agency): the CSRF token only."""


@dataclass
class CaseRow:
    case: CollectionCase
    appointment: Appointment
    patient_name: str
    amount_cents: int
    balance_cents: int
    why: str
    approver: str | None

    @property
    def label(self) -> str:
        if self.case.status == "payment_plan" and self.case.plan_instalments:
            return f"Payment plan ({self.case.plan_paid} of {self.case.plan_instalments} paid)"
        return LABELS.get(self.case.status, self.case.status)

    @property
    def can_final_notice(self) -> bool:
        return self.case.status == "collections" and self.case.final_notice_at is None

    @property
    def can_agency(self) -> bool:
        return self.case.can("send_to_agency")

    @property
    def can_plan(self) -> bool:
        return self.case.can("plan") and self.balance_cents > 0

    @property
    def can_write_off(self) -> bool:
        return self.case.can("write_off")


def _balance(case: CollectionCase, charge: Charge) -> int:
    helper = getattr(visit_charges, "balance_due_cents", None)
    if helper is not None:
        return helper(case)
    return max(0, charge.amount_cents - charge.amount_captured_cents)


def _rows(statuses, *, case_id: int | None = None) -> list[CaseRow]:
    query = (select(CollectionCase, Charge, Appointment, User.full_name)
             .join(Charge, Charge.id == CollectionCase.charge_id)
             .join(Appointment, Appointment.id == CollectionCase.appointment_id)
             .join(Patient, Patient.id == Appointment.patient_id)
             .join(User, User.id == Patient.user_id))
    if case_id is not None:
        query = query.where(CollectionCase.id == case_id)
    elif statuses is not None:
        query = query.where(CollectionCase.status.in_(statuses))
    found = db.session.execute(query.order_by(CollectionCase.created_at, CollectionCase.id).limit(LIMIT)).all()
    approvers = {u.id: u.full_name for u in db.session.scalars(select(User).where(User.id.in_(
        {c.written_off_by_id for c, *_ in found if c.written_off_by_id})))} if found else {}
    return [CaseRow(case, appt, name, charge.amount_cents, _balance(case, charge),
                    visit_status.failure_words(case.failure_kind, case.failure_code),
                    approvers.get(case.written_off_by_id))
            for case, charge, appt, name in found]


def _show_arg() -> str:
    show = request.args.get("show", "open")
    return show if show in FILTERS else "open"


def _page_context(show: str) -> dict:
    rows = _rows(FILTERS[show][1])
    phi.shown(patient_ids=[row.appointment.patient_id for row in rows], record={"collections": show})
    return dict(rows=rows, show=show, filters=FILTERS, forms={}, notices={})


@bp.get("/collections")
@access("billing", "admin", phi="billing")
def collections():
    return render("billing/collections.html", block="case_list", **_page_context(_show_arg()))


# -- the moves ------------------------------------------------------------------------------------

def _case_or_404(case_id: int) -> CollectionCase:
    case = db.session.get(CollectionCase, case_id)
    if case is None:
        abort(404)
    return case


def _row(case_id: int) -> CaseRow:
    rows = _rows(None, case_id=case_id)
    if not rows:
        abort(404)
    return rows[0]


def _answer(case_id: int, *, status: int = 200, notice: str | None = None, error: bool = False, forms=None):
    """htmx: the case's card; a plain post: the worklist (a redirect after success, the page with
    the card's message otherwise)."""
    if status == 200 and not is_htmx():
        flash(notice or "Saved.", "success")
        return redirect_htmx(url_for("billing.collections"))
    row = _row(case_id)
    phi.shown(appointment=row.appointment, record={"case_id": case_id})
    message = {"text": notice, "error": error} if notice else None
    if is_htmx():
        return render("billing/_collection_case.html", status=status, row=row, notice=message,
                      case_forms=forms or {})
    context = _page_context(_show_arg())
    context["notices"] = {case_id: message}
    context["forms"] = {case_id: forms or {}}
    if all(r.case.id != case_id for r in context["rows"]):
        context["rows"].append(row)
    return render("billing/collections.html", status=status, **context)


def _refused(case_id: int, error: Exception, forms=None):
    db.session.rollback()
    if isinstance(error, Ignored):
        message = "That was already done for this case."
    elif isinstance(error, InvalidTransition):
        message = "This case cannot take that step in its current state."
    else:
        message = str(error) or "That step is not possible for this case."
    return _answer(case_id, status=409, notice=message, error=True, forms=forms)


REFUSALS = (getattr(visit_charges, "CollectionsError", DomainError), DomainError, InvalidTransition, Ignored)


def _move(case_id: int, call, done: str, *, form: FlaskForm | None = None, forms_key: str | None = None):
    case = _case_or_404(case_id)
    form = form or ActionForm()
    forms = {forms_key: form} if forms_key else {}
    if not form.validate_on_submit():
        first = next((e for errors in form.errors.values() for e in errors), "Please check what you entered.")
        return _answer(case_id, status=422, notice=str(first), error=True, forms=forms)
    try:
        call(case, form)
    except REFUSALS as error:
        return _refused(case_id, error, forms)
    db.session.commit()
    return _answer(case_id, notice=done)


@bp.post("/collections/<int:case_id>/final-notice")
@access("billing", "admin", phi="billing")
def final_notice(case_id: int):
    return _move(case_id, lambda case, form: visit_charges.send_final_notice(
        db.session, case, actor=actor(), now=now()), "Final notice sent to the patient.")


@bp.post("/collections/<int:case_id>/agency")
@access("billing", "admin", phi="billing")
def send_to_agency(case_id: int):
    return _move(case_id, lambda case, form: visit_charges.send_to_agency(
        db.session, case, actor=actor(), now=now()), "Marked as sent to the collections agency.")


@bp.post("/collections/<int:case_id>/plan")
@access("billing", "admin", phi="billing")
def start_plan(case_id: int):
    return _move(case_id, lambda case, form: visit_charges.start_plan(
        db.session, case, instalments=form.instalments.data, actor=actor(), now=now()),
        "Payment plan set up.", form=PlanForm(), forms_key="plan")


@bp.post("/collections/<int:case_id>/write-off")
@access("billing", "admin", phi="billing")
@require_recent_mfa           # step-up, like refunds: a code from the last STEP_UP_MAX_AGE
def write_off(case_id: int):
    approver = db.session.get(User, current_user.id)
    return _move(case_id, lambda case, form: visit_charges.write_off(
        db.session, case, reason=form.reason.data.strip(), approver=approver, actor=actor(), now=now()),
        "Written off.", form=WriteOffForm(), forms_key="write_off")


# -- where a visit stands, for any page (the staff day view's cards, billing's lists) -------------

@bp.app_template_global("visit_state")
def visit_state(appointment) -> "visit_status.VisitState | None":
    """The post-visit state of one appointment (one query); pages listing many pass
    ``visit_states`` (visit_status.visit_states) instead."""
    return visit_status.visit_states(db.session, [appointment.id]).get(appointment.id)

