"""The estimate page of a submitted intake (issue 15): ``GET /intake/<id>/estimate``.

Imported at the bottom of app/blueprints/intake/__init__.py (the routes go on its ``bp``). The page is
the patient's own (another patient's intake is a 404, audited), shows PHI (insurer, benefits), so it is
``@access(..., phi=...)`` + ``phi.shown``: never cached, each view audited. It shows the newest
estimate of the intake (``estimates.latest_for_intake``); a submitted intake without one (the estimate
could not be made at submit) gets one here. "Choose a time" goes back to the provider's slots with the
intake id, ``/book/providers/<pid>?type_id=&intake_id=``; without a provider (``?provider_id=``) to
the search for the type.
"""
from __future__ import annotations

from flask import abort, redirect, request, url_for
from flask_login import current_user
from werkzeug.routing import BuildError

from app import phi
from app.access import access
from app.blueprints.intake import bp
from app.extensions import db
from app.models import AppointmentType
from app.models.insurance import Intake
from app.services import audit, estimates
from app.web import actor, now, render


def _own_intake(intake_id: int) -> Intake:
    intake = db.session.get(Intake, intake_id)
    patient = getattr(current_user, "patient", None)
    if intake is None or patient is None or intake.patient_id != patient.id:
        audit.record(db.session, actor=actor(), action="access.denied", outcome="failure",
                     details={"intake_id": intake_id, "path": request.path})
        db.session.commit()
        abort(404)
    phi.shown(patient_id=intake.patient_id, appointment_id=intake.appointment_id,
              record={"intake_id": intake.id})
    return intake


def _url(endpoint: str, **values) -> str | None:
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def _provider_id() -> int | None:
    raw = (request.args.get("provider_id") or "").strip()
    if not raw.isdigit() or len(raw) > 9:
        return None
    return int(raw)


@bp.get("/intake/<int:intake_id>/estimate")
@access("patient", phi="estimate")
def estimate(intake_id: int):
    intake = _own_intake(intake_id)
    if intake.status != "submitted":
        return redirect(_url("intake.resume", intake_id=intake.id) or url_for("booking.search"), code=303)
    found = estimates.latest_for_intake(db.session, intake.id)
    appointment_type = db.session.get(AppointmentType, intake.appointment_type_id)
    if found is None:
        found = estimates.build(db.session, patient=intake.patient_id, appointment_type=appointment_type,
                                intake=intake, service_date=now().date(), now=now(), actor=actor())
        db.session.commit()
    provider_id = _provider_id()
    if provider_id is not None:
        choose = url_for("booking.provider", provider_id=provider_id, type_id=appointment_type.id,
                         intake_id=intake.id)
    else:
        choose = url_for("booking.search", type_id=appointment_type.id, intake_id=intake.id)
    return render("intake/estimate.html", intake=intake, x=estimates.explain(db.session, found),
                  choose_url=choose,
                  insurance_url=_url("intake.step", intake_id=intake.id, step="insurance"))
