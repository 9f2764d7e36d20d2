"""Billing's claims (issue 15, billing and admin): the worklist of hybrid visits' claims (draft,
submitted, adjudicated, denied, reconciled) with "Submit" and "Check now" (poll the clearinghouse for
remittances), one claim's page (its lines, the payer's answer per line with the adjustments as
"PR-2 coinsurance $14.00", how the visit ended) and the manual EOB form for a paper answer (per
line: allowed, paid, and up to ADJUSTMENT_ROWS adjustments of group, reason code and amount;
validated by app/services/claims.py: billed = paid + adjustments).

Each POST calls one service of app/services/claims.py and commits; a refusal answers 409 with the
service's words, a form that does not add up 422 with what was typed kept."""
from __future__ import annotations

from flask import abort, flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from app import phi
from app.access import access
from app.blueprints.billing import bp, dollars_to_cents
from app.extensions import db
from app.models import Claim, ClearinghouseCursor, Coverage, Reconciliation, Refund, User
from app.services import claims
from app.web import actor, now, redirect_htmx, render

ADJUSTMENT_ROWS = 3


class ActionForm(FlaskForm):
    """A POST without fields of its own (submit, check now, the EOB's CSRF): the token only."""


def _show_arg() -> str:
    show = request.args.get("show", "open")
    return show if show in claims.WORKLIST else "open"


@bp.get("/claims")
@access("billing", "admin", phi="billing")
def claims_list():
    show = _show_arg()
    rows = claims.worklist(db.session, claims.WORKLIST[show][1])
    phi.shown(patient_ids=[r.appointment.patient_id for r in rows], record={"claims": show})
    cursor = db.session.get(ClearinghouseCursor, 1)
    return render("billing/claims.html", rows=rows, show=show, filters=claims.WORKLIST, form=ActionForm(),
                  polled_at=cursor.polled_at if cursor else None, configured=claims.client() is not None)


@bp.post("/claims/check")
@access("billing", "admin", phi="billing")
def check_remittances():
    """"Check now": apply what the clearinghouse answered since the last poll."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        result = claims.poll_remittances(db.session, actor=actor(), now=now())
    except claims.ClearinghouseError:
        db.session.rollback()
        flash("The clearinghouse could not be reached. Nothing changed; it is checked again automatically.",
              "error")
        return redirect_htmx(url_for("billing.claims_list", show=_show_arg()))
    db.session.commit()
    count = len(result.applied)
    flash(f"{count} new answer{'' if count == 1 else 's'} from payers applied." if count
          else "No new answers from payers.", "success")
    return redirect_htmx(url_for("billing.claims_list", show=_show_arg()))


def _claim_or_404(claim_id: int) -> Claim:
    claim = db.session.get(Claim, claim_id)
    if claim is None:
        abort(404)
    return claim


def _claim_context(claim: Claim, **extra) -> dict:
    row = claims.worklist(db.session, None, claim_id=claim.id)[0]
    phi.shown(appointment=row.appointment, record={"claim_id": claim.id})
    coverage = db.session.get(Coverage, claim.coverage_id)
    reconciliation = db.session.get(Reconciliation, row.reconciliation.id) if row.reconciliation else None
    refund = db.session.get(Refund, reconciliation.refund_id) if reconciliation and reconciliation.refund_id else None
    people = {u.id: u.full_name for u in db.session.query(User).filter(User.id.in_(
        {i for i in (claim.submitted_by_id, row.remittance.entered_by_id if row.remittance else None) if i}))}
    others = [c for c in db.session.query(Claim).filter(Claim.encounter_id == claim.encounter_id, Claim.id != claim.id)]
    context = dict(row=row, claim=claim, coverage=coverage, remittance=row.remittance, reconciliation=reconciliation,
                   refund=refund, people=people, others=others, form=ActionForm(), values={}, errors={},
                   notice=None, rows=ADJUSTMENT_ROWS, label=claims.adjustment_label,
                   words=claims.adjustment_words, groups=claims.GROUPS,
                   can_eob=row.remittance is None and claim.status in ("draft", "submitted"))
    context.update(extra)
    return context


@bp.get("/claims/<int:claim_id>")
@access("billing", "admin", phi="billing")
def claim(claim_id: int):
    return render("billing/claim.html", **_claim_context(_claim_or_404(claim_id)))


@bp.post("/claims/<int:claim_id>/submit")
@access("billing", "admin", phi="billing")
def submit_claim(claim_id: int):
    claim = _claim_or_404(claim_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    user = db.session.get(User, current_user.id)
    try:
        claims.request_submit(db.session, claim, user=user, actor=actor(), now=now())
    except claims.ClaimError as error:
        db.session.rollback()
        return render("billing/claim.html", status=409, **_claim_context(_claim_or_404(claim_id), notice=str(error)))
    db.session.commit()                 # the request is remembered before the clearinghouse hears of it
    result = claims.submit(db.session, claim_id, actor=actor(), now=now())
    db.session.commit()
    claim = _claim_or_404(claim_id)
    if result == "submitted":
        flash(f"Sent to the clearinghouse: payer claim number {claim.payer_claim_number}.", "success")
    elif result == "unavailable":
        flash("The clearinghouse could not be reached. The claim is saved and sent automatically.", "info")
    elif result == "rejected":
        flash(f"The clearinghouse refused the claim: {claim.last_error}", "error")
    return redirect_htmx(url_for("billing.claim", claim_id=claim_id))


def _parse_eob(claim: Claim, form) -> tuple[list[claims.EobLine], dict[str, str], dict[str, str]]:
    """The typed EOB (values kept as typed) -> lines in cents, and per-field errors."""
    values, errors, lines = {}, {}, []

    def cents(name: str, *, required: bool) -> int | None:
        text = (form.get(name) or "").strip()[:20]
        values[name] = text
        if not text:
            if required:
                errors[name] = "Enter an amount (0 if none)."
            return None
        try:
            return dollars_to_cents(text)
        except ValueError as error:
            errors[name] = str(error)
            return None

    for source in claim.lines:
        n = source["line_number"]
        allowed = cents(f"line-{n}-allowed", required=True)
        paid = cents(f"line-{n}-paid", required=True)
        adjustments = []
        for k in range(ADJUSTMENT_ROWS):
            group = (form.get(f"line-{n}-adj-{k}-group") or "").strip().upper()[:2]
            code = (form.get(f"line-{n}-adj-{k}-code") or "").strip().upper()[:8]
            values[f"line-{n}-adj-{k}-group"], values[f"line-{n}-adj-{k}-code"] = group, code
            amount = cents(f"line-{n}-adj-{k}-amount", required=False)
            if not group and not code and amount is None and f"line-{n}-adj-{k}-amount" not in errors:
                continue                                           # an empty row
            if amount is None and f"line-{n}-adj-{k}-amount" not in errors:
                errors[f"line-{n}-adj-{k}-amount"] = "Enter the adjustment's amount."
            adjustments.append((group, code, amount))
        if allowed is not None and paid is not None:
            lines.append(claims.EobLine(n, allowed, paid, adjustments))
    return lines, values, errors


@bp.post("/claims/<int:claim_id>/eob")
@access("billing", "admin", phi="billing")
def record_eob(claim_id: int):
    claim = _claim_or_404(claim_id)
    form = ActionForm()
    lines, values, errors = _parse_eob(claim, request.form)
    if not form.validate_on_submit():
        errors["form"] = "The form expired. Please enter the EOB again."
    if errors:
        return render("billing/claim.html", status=422, **_claim_context(
            claim, values=values, errors=errors, notice="Please correct the highlighted fields."))
    user = db.session.get(User, current_user.id)
    try:
        claims.record_eob(db.session, claim_id, lines, user=user, actor=actor(), now=now())
    except claims.EobInvalid as error:
        db.session.rollback()
        return render("billing/claim.html", status=422, **_claim_context(
            _claim_or_404(claim_id), values=values, errors=error.errors, notice=str(error)))
    except claims.ClaimError as error:
        db.session.rollback()
        return render("billing/claim.html", status=409, **_claim_context(
            _claim_or_404(claim_id), values=values, notice=str(error)))
    db.session.commit()
    flash("The EOB is recorded. The visit is reconciled in a moment.", "success")
    return redirect_htmx(url_for("billing.claim", claim_id=claim_id))
