"""The intake rows the PHI-view table (tests/foundation/test_phi_views.py) opens: made on first use
for the table's clinic (its patient's confirmed appointment), cached in the clinic dict."""
from __future__ import annotations


def intake_case(clinic: dict) -> dict:
    """{intake_id, coverage_id}: a submitted-looking draft attached to the clinic's confirmed visit,
    with a primary coverage holding a card photo."""
    if "_intake" not in clinic:
        from app.extensions import db
        from app.models import Appointment, AppointmentType, Patient, Payer
        from app.services import intake as intakes
        from app.services.audit import Actor

        session = db.session
        appointment = session.get(Appointment, clinic["appointment_id"])
        if session.get(Payer, "AETNA-DEMO") is None:
            session.add(Payer(id="AETNA-DEMO", name="Aetna (demo)"))
            session.flush()
        found = intakes.start(session, patient=session.get(Patient, clinic["patient_id"]),
                              appointment_type=session.get(AppointmentType, appointment.type_id),
                              appointment=appointment, now=appointment.created_at, actor=Actor.system("test"))
        coverage = intakes.save_coverage(
            session, found, rank="primary", now=appointment.created_at, actor=Actor.system("test"),
            fields={"payer_id": "AETNA-DEMO", "member_id": "W100000001", "subscriber_relationship": "self",
                    "subscriber_name": "Pat Example", "subscriber_birth_date": "1980-01-01"},
            front=intakes.Photo(b"\xff\xd8\xff\xe0photo", "image/jpeg"))
        session.commit()
        clinic["_intake"] = {"intake_id": found.id, "coverage_id": coverage.id}
    return clinic["_intake"]
