"""The admin's ledger pages (issue 16): the report per day and per provider over a range of the clinic's
days (``/admin/ledger``, its CSV export ``/admin/ledger.csv``), the daily reconciliations with Stripe
(each run's page names every mismatch: ``/admin/ledger/reconciliations/<id>``) and "Reconcile now" for
a chosen UTC day. Cents, days, provider names (staff) and Stripe ids: no PHI. Admins only; a bad
date is a 400 with the reason."""
from __future__ import annotations

from datetime import date, timedelta, timezone

from flask import abort, flash, make_response, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField

from app import input_guard
from app.access import access
from app.blueprints.admin import bp
from app.extensions import db
from app.models.ledger import LedgerReconciliation
from app.services import fees, ledger_reconcile, ledger_reports
from app.web import actor, now, redirect_htmx, render

DEFAULT_DAYS = 7


class ReconcileForm(FlaskForm):
    day = StringField("Day (UTC)")


def cents(value: int | None) -> str:
    if value is None:
        return "—"
    sign = "−" if value < 0 else ""
    value = abs(int(value))
    return f"{sign}${value // 100:,}.{value % 100:02d}"


def _range() -> tuple[date, date]:
    """The report's days from ``from`` / ``to`` (the clinic's days); by default the last week."""
    today = fees.clinic_today(db.session, now())
    try:
        last = input_guard.parse_date(request.args["to"], what="The end date") if request.args.get("to") else today
        first = (input_guard.parse_date(request.args["from"], what="The start date") if request.args.get("from")
                 else last - timedelta(days=DEFAULT_DAYS - 1))
        ledger_reports.check_range(first, last)
    except (input_guard.BadValue, ledger_reports.ReportError) as error:
        abort(input_guard.bad_request(str(error)))
    return first, last


def _page(first: date, last: date, form: ReconcileForm | None = None, *, status: int = 200):
    report = ledger_reports.report(db.session, first=first, last=last)
    runs = ledger_reconcile.latest_runs(db.session, [d for d, _ in report.days])
    yesterday = now().astimezone(timezone.utc).date() - timedelta(days=1)
    form = form or ReconcileForm(formdata=None, day=yesterday.isoformat())
    return render("admin/ledger.html", status=status, report=report, runs=runs, form=form, cents=cents,
                  figures=ledger_reports.FIGURES, words=ledger_reports.FIGURE_WORDS, first=first, last=last,
                  clinic_tz=report.timezone)


@bp.get("/ledger")
@access("admin", phi=False)
def ledger():
    first, last = _range()
    return _page(first, last)


@bp.get("/ledger.csv")
@access("admin", phi=False)
def ledger_csv():
    first, last = _range()
    body = ledger_reports.to_csv(ledger_reports.report(db.session, first=first, last=last))
    response = make_response(body)
    response.mimetype = "text/csv"
    response.headers["Content-Disposition"] = (f'attachment; filename="ledger-{first.isoformat()}'
                                               f'-{last.isoformat()}.csv"')
    return response


@bp.get("/ledger/reconciliations/<int:reconciliation_id>")
@access("admin", phi=False)
def ledger_reconciliation(reconciliation_id: int):
    run = db.session.get(LedgerReconciliation, reconciliation_id)
    if run is None:
        abort(404)
    earlier = db.session.query(LedgerReconciliation).filter(
        LedgerReconciliation.day == run.day, LedgerReconciliation.id != run.id).order_by(
        LedgerReconciliation.id.desc()).limit(20).all()
    return render("admin/ledger_reconciliation.html", run=run, earlier=earlier, cents=cents,
                  kind_words=ledger_reconcile.kind_words, form=ReconcileForm(formdata=None, day=run.day.isoformat()))


@bp.post("/ledger/reconcile")
@access("admin", phi=False)
def ledger_reconcile_now():
    form = ReconcileForm()
    form.validate_on_submit()                     # the CSRF token (a missing one is refused before)
    try:
        day = input_guard.parse_date(form.day.data or "", what="The day")
    except input_guard.BadValue as error:
        return input_guard.bad_request(str(error))
    today = now().astimezone(timezone.utc).date()
    if day > today:
        return input_guard.bad_request("That day has not started yet (days are UTC, Stripe's clock).")
    try:
        run = ledger_reconcile.reconcile_day(db.session, day=day, now=now(), actor=actor())
    except ledger_reconcile.AlreadyRunning as running:
        flash(f"A reconciliation of {day.isoformat()} is already running.", "info")
        return redirect_htmx(url_for("admin.ledger_reconciliation", reconciliation_id=running.run.id))
    if run.status == "failed":
        flash(f"Stripe could not be reached; the reconciliation of {day.isoformat()} failed and will be tried "
              "again by the next daily run.", "error")
    elif run.status == "mismatched":
        flash(f"{day.isoformat()}: {len(run.mismatches)} mismatch{'es' if len(run.mismatches) != 1 else ''} "
              "found. The admins were alerted.", "error")
    else:
        flash(f"{day.isoformat()}: the ledger agrees with Stripe ({run.matched} balance transactions).", "success")
    return redirect_htmx(url_for("admin.ledger_reconciliation", reconciliation_id=run.id))
