"""Billing's disputes (issue 16, billing and admin): the worklist of disputed payments (open ones, overdue
first: the due date in the clinic's timezone, the amount, the status, the visit's date), one dispute's
page (each field of the evidence assembled from the visit, with an approve box, billing's own text,
Save and Submit; once submitted, read-only: what was sent and the outcome), and "Check Stripe now"
(the poll a lost webhook would otherwise wait for).

Each POST calls app/services/disputes.py and commits; input that does not fit the page answers 422
with the words, a dispute that no longer takes evidence (or Stripe's refusal) 409. The pages show
PHI-adjacent data (a visit's date and attendance times): declared ``phi="billing"`` and each view is
audited (app/phi.py); like every page they are ``no-store``."""
from __future__ import annotations

from flask import abort, flash, request, url_for
from flask_wtf import FlaskForm

from app import phi
from app.access import access
from app.blueprints.billing import bp
from app.extensions import db
from app.models import Dispute, User
from app.services import disputes
from app.services.gateway import PaymentServiceError
from app.web import actor, now, redirect_htmx, render

SHOW = {"open": "Open", "closed": "Closed"}


class ActionForm(FlaskForm):
    """A POST whose fields are read by hand (approve boxes, billing's text): the CSRF token only."""


def _show_arg() -> str:
    show = request.args.get("show", "open")
    return show if show in SHOW else "open"


@bp.get("/disputes")
@access("billing", "admin", phi="billing")
def disputes_list():
    show = _show_arg()
    rows = disputes.worklist(db.session, now=now(), show=show)
    phi.shown(patient_ids=[r.appointment.patient_id for r in rows if r.appointment is not None],
              record={"disputes": show})
    return render("billing/disputes.html", rows=rows, show=show, filters=SHOW, form=ActionForm(),
                  words=disputes.words, reasons=disputes.REASON_WORDS)


@bp.post("/disputes/check")
@access("billing", "admin", phi="billing")
def check_disputes():
    """"Check Stripe now": apply the disputes Stripe made in the last 30 days (a lost webhook)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        result = disputes.poll(db.session, now=now(), actor=actor())
    except PaymentServiceError:
        db.session.rollback()
        flash("Stripe could not be reached. Nothing changed; disputes are checked again automatically.", "error")
        return redirect_htmx(url_for("billing.disputes_list"))
    db.session.commit()
    opened = result["states"].get("opened", 0)
    flash(f"{opened} new dispute{'' if opened == 1 else 's'} found." if opened else "No new disputes.", "success")
    return redirect_htmx(url_for("billing.disputes_list"))


def _dispute_or_404(dispute_id: int) -> Dispute:
    dispute = db.session.get(Dispute, dispute_id)
    if dispute is None:
        abort(404)
    return dispute


def _context(dispute: Dispute, **extra) -> dict:
    appointment = dispute.appointment
    if appointment is not None:
        phi.shown(appointment=appointment, record={"dispute_id": dispute.id})
    else:
        phi.shown(record={"dispute_id": dispute.id})
    submitter = db.session.get(User, dispute.submitted_by_id) if dispute.submitted_by_id else None
    evidence = disputes.current_evidence(db.session, dispute)
    context = dict(dispute=dispute, appointment=appointment, fields=disputes.fields_of(evidence),
                   digest=disputes.evidence_digest(evidence),
                   approved=set(dispute.approved or []), extra_text=dispute.extra_text or "",
                   sent=sorted((dispute.submitted_evidence or {}).items()), submitter=submitter,
                   form=ActionForm(), notice=None, words=disputes.words, reasons=disputes.REASON_WORDS,
                   overdue=bool(dispute.open and dispute.due_by is not None and dispute.due_by < now()),
                   editable=dispute.needs_response and dispute.submitted_at is None,
                   max_chars=disputes.EXTRA_TEXT_MAX)
    context.update(extra)
    return context


@bp.get("/disputes/<int:dispute_id>")
@access("billing", "admin", phi="billing")
def dispute(dispute_id: int):
    return render("billing/dispute.html", **_context(_dispute_or_404(dispute_id)))


@bp.post("/disputes/<int:dispute_id>")
@access("billing", "admin", phi="billing")
def dispute_review(dispute_id: int):
    """Save billing's review (approved fields, their own text); nothing goes to Stripe."""
    return _review(dispute_id, submit=False)


@bp.post("/disputes/<int:dispute_id>/submit")
@access("billing", "admin", phi="billing")
def dispute_submit(dispute_id: int):
    """Save billing's review, then submit the approved evidence to Stripe (the Submit button's
    ``formaction``: the same form, so what is ticked on the page is what is sent)."""
    return _review(dispute_id, submit=True)


def _review(dispute_id: int, *, submit: bool):
    found = _dispute_or_404(dispute_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    approved = request.form.getlist("approve")
    extra = request.form.get("extra_text", "")
    seen = request.form.get("evidence_digest") or None
    kept = dict(approved=set(approved), extra_text=extra[:disputes.EXTRA_TEXT_MAX * 2])
    try:
        disputes.save_review(db.session, found, approved, extra, actor(), seen=seen)
    except disputes.DisputeError as error:
        db.session.rollback()
        status = 409 if isinstance(error, disputes.NotOpen) else 422
        return render("billing/dispute.html", status=status,
                      **_context(_dispute_or_404(dispute_id), notice=str(error), **kept))
    db.session.commit()                  # the review is kept whatever Stripe says next
    if not submit:
        flash("Saved. Nothing has been sent to Stripe yet.", "success")
        return redirect_htmx(url_for("billing.dispute", dispute_id=dispute_id))
    try:
        disputes.submit(db.session, dispute_id, actor(), now=now())
    except disputes.DisputeUnavailable as error:
        flash(str(error), "error")
        return redirect_htmx(url_for("billing.dispute", dispute_id=dispute_id))
    except disputes.DisputeError as error:
        db.session.rollback()
        status = 422 if isinstance(error, disputes.InvalidReview) else 409
        return render("billing/dispute.html", status=status,
                      **_context(_dispute_or_404(dispute_id), notice=str(error)))
    flash("Submitted to Stripe. The bank decides; the outcome appears here and in the visit's audit chain.",
          "success")
    return redirect_htmx(url_for("billing.dispute", dispute_id=dispute_id))
