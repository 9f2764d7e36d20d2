"""Staff pages: availability and exceptions, appointment types, provider day/week views."""
from flask import Blueprint

bp = Blueprint("staff", __name__, url_prefix="/staff")

from app.blueprints.staff import availability, calendar, catalog, patients  # noqa: E402,F401  (routes on bp)
from app.blueprints.staff import encounters  # noqa: E402,F401  (the provider's notes: the basic EMR)
from app.blueprints.staff import payouts  # noqa: E402,F401  (the provider's payout account: issue 16)
from app.blueprints.staff import waitlist  # noqa: E402,F401  (the waitlist per provider: issue 17)
from app.blueprints.staff import earnings  # noqa: E402,F401  (earnings pages: issue 16; also /admin/providers/<id>/earnings)
