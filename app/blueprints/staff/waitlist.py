"""The waitlist per provider (issue 17): who is waiting for this provider's times (named for them, or
for their specialty), their windows, offers made, and how many freed slots the waitlist refilled.
Providers see their own; admins pick a provider. Staff pages stay English."""
from __future__ import annotations

from flask import abort, request
from flask_login import current_user
from sqlalchemy import select

from app import input_guard, phi
from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.common import own_provider
from app.extensions import db
from app.models import Provider
from app.services import waitlist as waitlist_service
from app.web import now, render


def _chosen() -> Provider | None:
    if current_user.role == "provider":
        return own_provider()
    raw = (request.args.get("provider_id") or "").strip()
    if not raw:
        return None
    try:
        provider_id = input_guard.parse_int(raw, what="provider")
    except input_guard.BadValue:
        abort(404)
    provider = db.session.get(Provider, provider_id)
    if provider is None:
        abort(404)
    return provider


@bp.get("/waitlist")
@access("provider", "admin", phi="waitlist")
def waitlist():
    provider = _chosen()
    providers = [] if current_user.role == "provider" else list(
        db.session.scalars(select(Provider).order_by(Provider.id)))
    rows = waitlist_service.for_provider(db.session, provider, now=now()) if provider is not None else []
    if rows:
        phi.shown(patient_ids=[r.entry.patient_id for r in rows])
    else:
        phi.withheld()
    refilled = waitlist_service.refilled_count(db.session, provider_id=provider.id) if provider is not None else None
    return render("staff/waitlist.html", provider=provider, providers=providers, rows=rows, refilled=refilled,
                  total_refilled=waitlist_service.refilled_count(db.session))
