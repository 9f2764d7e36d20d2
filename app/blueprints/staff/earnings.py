"""Provider earnings (issue 16): per visit gross, fees, share and where the share is; totals per payout;
a CSV export. Read-only pages over app/services/earnings.py.

- ``GET /staff/earnings`` and ``/staff/earnings.csv``: the signed-in provider's own.
- ``GET /admin/providers/<id>/earnings`` and ``.csv``: any provider's, for billing and admins (the
  admin's payout readiness list links each provider here). A provider never reaches these (403).

``?from=YYYY-MM-DD&to=YYYY-MM-DD`` (both optional, inclusive, the clinic's days) limits the visits;
a date that is not one, out of 1900..2200, or a start after the end is a 400 with the reason.

No patient's name, type name or anything clinical is shown or exported: visits are a date, a time
and the appointment id (the CSV travels), so the pages declare ``phi=False``; like every page they
are ``Cache-Control: no-store`` (app/__init__.py), the CSV says so itself too.
"""
from __future__ import annotations

from flask import abort, make_response, request

from app import input_guard
from app.access import access
from app.blueprints.admin import bp as admin_bp
from app.blueprints.staff import bp
from app.blueprints.staff.common import own_provider
from app.extensions import db
from app.models import Provider
from app.services import earnings as earnings_service
from app.services import payout_accounts
from app.web import now, render


def _range():
    """``from`` / ``to`` of the query string (empty: open), or a 400 that says what is wrong."""
    values = {}
    for name, what in (("from", "The start date"), ("to", "The end date")):
        raw = request.args.get(name, "")
        if not raw.strip():
            values[name] = None
            continue
        try:
            values[name] = input_guard.parse_date(raw[:40], what=what)
        except input_guard.BadValue as error:
            message = str(error)
            if message.startswith("Dates look"):
                message = f"{what} is not a date: dates look like 2026-12-31."
            input_guard.refuse(message)
    try:
        earnings_service.check_range(values["from"], values["to"])
    except earnings_service.BadRange as error:
        input_guard.refuse(str(error))
    return values["from"], values["to"]


def _earnings(provider: Provider):
    start, end = _range()
    return earnings_service.for_provider(db.session, provider.id, now=now(), start=start, end=end)


def _csv(earnings, provider: Provider):
    response = make_response(earnings_service.to_csv(earnings))
    response.mimetype = "text/csv"
    period = "-".join(d.isoformat() for d in (earnings.start, earnings.end) if d) or "all"
    response.headers["Content-Disposition"] = f'attachment; filename="earnings-{provider.id}-{period}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(earnings, *, provider, admin_view: bool):
    return render("staff/earnings.html", earnings=earnings, provider=provider, admin_view=admin_view,
                  account_words=payout_accounts.words(earnings.account_status))


# -- the provider's own ----------------------------------------------------------------------------

@bp.get("/earnings")
@access("provider", phi=False)
def earnings():
    provider = own_provider()
    if provider is None:
        return render("staff/earnings.html", earnings=None, provider=None, admin_view=False)
    return _page(_earnings(provider), provider=provider, admin_view=False)


@bp.get("/earnings.csv")
@access("provider", phi=False)
def earnings_csv():
    provider = own_provider()
    if provider is None:
        abort(404)
    return _csv(_earnings(provider), provider)


# -- any provider's, for billing and admins ------------------------------------------------------

@admin_bp.get("/providers/<int:provider_id>/earnings")
@access("billing", "admin", phi=False)
def provider_earnings(provider_id: int):
    provider = db.get_or_404(Provider, provider_id)
    return _page(_earnings(provider), provider=provider, admin_view=True)


@admin_bp.get("/providers/<int:provider_id>/earnings.csv")
@access("billing", "admin", phi=False)
def provider_earnings_csv(provider_id: int):
    provider = db.get_or_404(Provider, provider_id)
    return _csv(_earnings(provider), provider)
