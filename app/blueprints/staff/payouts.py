"""The provider's "Payouts" settings (issue 16): connect a Stripe Express account, continue its
onboarding, see its status in plain words. No PHI is shown.

- ``GET /staff/payouts``: the status, and the next step (set up / continue onboarding).
- ``POST /staff/payouts/connect``: the account row is stored and committed, then Stripe's account
  is created (idempotent on the row's UUID) and committed; back to the page, whose "Continue to
  Stripe" link leads on. (A link, not the form's redirect: the page's CSP keeps ``form-action`` to
  this site, and a link is not a form submission.)
- ``GET /staff/payouts/refresh``: Stripe's ``refresh_url`` (a used or expired link) and the page's
  "continue" link: a fresh account link, and a redirect to it.
- ``GET /staff/payouts/return``: Stripe's ``return_url``: the account is re-read and its status shown.
"""
from flask import abort, flash, redirect, url_for

from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.common import own_provider
from app.extensions import db
from app.services import DomainError, payout_accounts
from app.services.gateway import PaymentServiceUnavailable
from app.web import actor, now, redirect_htmx, render

UNREACHABLE = "Stripe could not be reached just now. Please try again in a minute."


def _page(account, *, provider, status=200, came_back=False):
    return render("staff/payouts.html", status=status, provider=provider, account=account, came_back=came_back,
                  words=payout_accounts.words(account.status if account else None),
                  requirement_words=payout_accounts.requirement_words)


@bp.get("/payouts")
@access("provider", phi=False)
def payouts():
    provider = own_provider()
    account = payout_accounts.account_for(db.session, provider.id) if provider else None
    return _page(account, provider=provider)


@bp.post("/payouts/connect")
@access("provider", phi=False)
def payouts_connect():
    provider = own_provider()
    if provider is None:
        flash("Your provider profile is not set up yet: ask the clinic's admin.", "error")
        return redirect_htmx(url_for("staff.payouts"))
    account = payout_accounts.open_account(db.session, provider, actor=actor())
    db.session.commit()                                 # our row (its UUID) before Stripe hears of it
    if account.stripe_account_id:                       # pressed again (another tab): nothing to create
        return redirect_htmx(url_for("staff.payouts"))
    try:
        payout_accounts.ensure_stripe_account(db.session, account, actor=actor(), now=now())
    except DomainError as error:
        db.session.rollback()
        flash(UNREACHABLE if isinstance(error, PaymentServiceUnavailable) else str(error), "error")
        return redirect_htmx(url_for("staff.payouts"))
    db.session.commit()
    flash("Your payout account is created. Continue to Stripe to finish onboarding.", "success")
    return redirect_htmx(url_for("staff.payouts"))


@bp.get("/payouts/refresh")
@access("provider", phi=False)
def payouts_refresh():
    provider = own_provider()
    account = payout_accounts.account_for(db.session, provider.id) if provider else None
    if account is None:
        return redirect(url_for("staff.payouts"), code=303)
    try:
        url = payout_accounts.start_onboarding(
            db.session, account, actor=actor(), now=now(),
            refresh_url=url_for("staff.payouts_refresh", _external=True),
            return_url=url_for("staff.payouts_return", _external=True))
    except DomainError as error:
        db.session.rollback()
        flash(UNREACHABLE if isinstance(error, PaymentServiceUnavailable) else str(error), "error")
        return redirect(url_for("staff.payouts"), code=303)
    db.session.commit()                                 # an account created here (a row left creating)
    return redirect(url, code=303)


@bp.get("/payouts/return")
@access("provider", phi=False)
def payouts_return():
    provider = own_provider()
    account = payout_accounts.account_for(db.session, provider.id) if provider else None
    if account is None:
        return redirect(url_for("staff.payouts"), code=303)
    try:
        payout_accounts.refresh_account(db.session, account, actor=actor(), now=now())
    except DomainError:
        db.session.rollback()
        flash("Stripe could not be reached to check your account; the status below may be out of date.", "error")
        account = payout_accounts.account_for(db.session, provider.id)
    else:
        db.session.commit()
    if account is None:                                  # pragma: no cover - the row is never deleted
        abort(404)
    return _page(account, provider=provider, came_back=True)
