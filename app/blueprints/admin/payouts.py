"""The admin's payout readiness list (/admin/payouts, issue 16): every provider, whether they can be
paid (an enabled Stripe Connect account) and what Stripe still wants. Names and statuses, no PHI."""
from app.access import access
from app.blueprints.admin import bp
from app.extensions import db
from app.services import payout_accounts
from app.web import render


@bp.get("/payouts")
@access("admin", phi=False)
def payouts():
    rows = payout_accounts.readiness(db.session)
    return render("admin/payouts.html", rows=rows, ready=sum(1 for r in rows if r.ready),
                  requirement_words=payout_accounts.requirement_words)
