"""The audit chain page of an appointment and its CSV / JSON exports (billing and admin).

Opening the page or an export is itself audited, and committed with it."""
from flask import Blueprint, abort, make_response

from app import phi
from app.access import access
from app.extensions import db
from app.models import Appointment
from app.services import audit_chain
from app.web import actor, render

bp = Blueprint("chain", __name__, url_prefix="/billing/appointments")


def _chain(appointment_id: int) -> audit_chain.Chain:
    appointment = db.session.get(Appointment, appointment_id)
    if appointment is None:
        abort(404)
    return audit_chain.build(db.session, appointment)


@bp.get("/<int:appointment_id>/chain")
@access("billing", "admin", phi="audit_chain")
def show(appointment_id: int):
    chain = _chain(appointment_id)
    audit_chain.record_access(db.session, chain, actor=actor())
    db.session.commit()
    phi.recorded()          # audit.chain_viewed / chain_exported is this view's event
    return render("chain/show.html", chain=chain, appt=chain.appointment)


def _download(body: str, mimetype: str, filename: str):
    response = make_response(body)
    response.mimetype = mimetype
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/<int:appointment_id>/chain.csv")
@access("billing", "admin", phi="audit_chain")
def export_csv(appointment_id: int):
    chain = _chain(appointment_id)
    audit_chain.record_access(db.session, chain, actor=actor(), export="csv")
    db.session.commit()
    phi.recorded()          # audit.chain_viewed / chain_exported is this view's event
    return _download(audit_chain.to_csv(chain), "text/csv", f"appointment-{appointment_id}-chain.csv")


@bp.get("/<int:appointment_id>/chain.json")
@access("billing", "admin", phi="audit_chain")
def export_json(appointment_id: int):
    chain = _chain(appointment_id)
    audit_chain.record_access(db.session, chain, actor=actor(), export="json")
    db.session.commit()
    phi.recorded()          # audit.chain_viewed / chain_exported is this view's event
    return _download(audit_chain.to_json(chain), "application/json", f"appointment-{appointment_id}-chain.json")
