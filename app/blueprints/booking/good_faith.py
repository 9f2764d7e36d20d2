"""The Good Faith Estimate of an appointment (45 CFR 149.610), kept with it: ``GET
/appointments/<id>/good-faith-estimate``.

The patient's own (another patient's appointment is a 404, audited; ``phi.shown`` by
``_own_appointment``), never cached. The estimate is made and attached at scheduling (the hold for a
hybrid visit, the BOOKING_CONFIRMED job otherwise) and its link emailed; asked for here before the job
ran, it is made now (the patient may ask for a GFE at any time). An insured hybrid visit has no GFE:
the page sends the patient to the appointment.
"""
from __future__ import annotations

import json

from flask import redirect, url_for

from app.access import access
from app.blueprints.booking import _own_appointment, bp
from app.extensions import db
from app.models import AppointmentType
from app.services import estimates, identifiers
from app.services.clinic import current_clinic
from app.web import actor, now, render


def _patient_identity(appointment) -> tuple[str, str | None]:
    """The name and birth date the GFE names: the intake's legal name and birth date when there is one."""
    intake = estimates._intake_for(db.session, appointment.id)
    name, born = appointment.patient.user.full_name, None
    if intake is not None:
        try:
            demo = (json.loads(intake.data or "{}").get("demographics") or {})
        except ValueError:
            demo = {}
        name = demo.get("legal_name") or name
        born = demo.get("date_of_birth") or None
    return name, born


@bp.get("/appointments/<int:appointment_id>/good-faith-estimate")
@access("patient", phi="good_faith_estimate")
def good_faith_estimate(appointment_id: int):
    appointment = _own_appointment(appointment_id)
    found = estimates.for_appointment(db.session, appointment.id)
    if found is None or not found.good_faith:
        if appointment.status not in ("held", "confirmed", "checked_in", "completed"):
            return redirect(url_for("booking.appointment", appointment_id=appointment.id), code=303)
        found = estimates.good_faith_for(db.session, appointment, now=now(), actor=actor())
        db.session.commit()
        if found is None:
            return redirect(url_for("booking.appointment", appointment_id=appointment.id), code=303)
    name, born = _patient_identity(appointment)
    clinic_info = current_clinic(db.session)
    return render("booking/good_faith_estimate.html", appointment=appointment,
                  x=estimates.explain(db.session, found), patient_name=name, birth_date=born,
                  appointment_type=db.session.get(AppointmentType, appointment.type_id),
                  clinic_info=clinic_info, clinic_tin=identifiers.format_tin(clinic_info.tax_id))


@bp.app_template_global("has_good_faith_estimate")
def has_good_faith_estimate(appointment) -> bool:
    """Whether a Good Faith Estimate is kept with the appointment (one small query)."""
    found = estimates.for_appointment(db.session, appointment.id)
    return found is not None and found.good_faith
