"""The estimate rows the PHI-view table (tests/foundation/test_phi_views.py) opens, made on first use
for the table's clinic and cached in the clinic dict."""
from __future__ import annotations


def estimate_case(clinic: dict) -> dict:
    """{intake_id}: a submitted self-pay ("I'll pay myself") intake of the clinic's patient, for the
    clinic's visit type, not attached to any appointment, with its estimate built (no insurer asked)."""
    if "_estimate" not in clinic:
        import json

        from app.extensions import db
        from app.models import Appointment, AppointmentType, Intake
        from app.services import estimates
        from app.services.audit import Actor

        session = db.session
        appointment = session.get(Appointment, clinic["appointment_id"])
        appointment_type = session.get(AppointmentType, appointment.type_id)
        intake = Intake(patient_id=clinic["patient_id"], appointment_type_id=appointment_type.id,
                        status="submitted", submitted_at=appointment.created_at,
                        data=json.dumps({"self_pay": True}))
        session.add(intake)
        session.flush()
        estimates.build(session, patient=clinic["patient_id"], appointment_type=appointment_type, intake=intake,
                        service_date=appointment.starts_at.date(), now=appointment.created_at,
                        actor=Actor.system("test"))
        session.commit()
        clinic["_estimate"] = {"intake_id": intake.id}
    return clinic["_estimate"]
