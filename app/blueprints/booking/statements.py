"""The patient's itemized statement of a signed visit: the page and its PDF (app/services/statements.py).

Both are the patient's own (another patient's appointment is a 404, audited), shown only once the
provider signed the note, and never cached."""
from __future__ import annotations

from flask import abort, make_response

from app.access import access
from app.blueprints.booking import _own_appointment, bp
from app.extensions import db
from app.services import statements
from app.services.clinic import current_clinic
from app.web import render


def _statement(appointment_id: int):
    appointment = _own_appointment(appointment_id)        # 404 (audited) for anyone else's; phi.shown
    found = statements.statement(db.session, appointment)
    if found is None:
        abort(404)                                        # not signed yet: no statement
    return appointment, found


@bp.get("/appointments/<int:appointment_id>/statement")
@access("patient", phi="statement")
def statement(appointment_id: int):
    appointment, found = _statement(appointment_id)
    return render("booking/statement.html", appointment=appointment, statement=found)


@bp.get("/appointments/<int:appointment_id>/statement.pdf")
@access("patient", phi="statement")
def statement_pdf(appointment_id: int):
    appointment, found = _statement(appointment_id)
    body = statements.statement_pdf(found, clinic=current_clinic(db.session),
                                    patient_display=appointment.patient.user.full_name)
    response = make_response(body)
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="statement-{appointment.id}.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global("has_statement")
def has_statement(appointment) -> bool:
    """Whether the appointment's note is signed (so its statement exists): one small query."""
    return statements.has_statement(db.session, appointment.id)
