"""Expected status per role for the provider's notes (the basic EMR, issue 14; merged into
test_access.EXPECTED).

Providers only, on their own visits: the table's provider has no provider profile, so every note
and visit is someone else's (404), and their worklist says the profile is missing (200). An admin
may read a note (read-only), nothing else; billing and patients are refused."""
from datetime import datetime, timedelta, timezone

LOGIN, DENY, MISSING = 302, 403, 404
PROVIDER_ONLY = dict(anonymous=LOGIN, patient=DENY, provider=MISSING, billing=DENY, admin=DENY)

EMR_EXPECTED = {
    ("GET", "staff.encounters"): dict(PROVIDER_ONLY, provider=200),
    ("GET", "staff.encounter_for_appointment"): PROVIDER_ONLY,
    ("POST", "staff.encounter_for_appointment"): PROVIDER_ONLY,
    ("GET", "staff.encounter"): dict(PROVIDER_ONLY, admin=200),
    ("POST", "staff.save_draft"): PROVIDER_ONLY,
    ("GET", "staff.search_diagnoses"): PROVIDER_ONLY,
    ("POST", "staff.add_diagnosis"): PROVIDER_ONLY,
    ("POST", "staff.remove_diagnosis"): PROVIDER_ONLY,
    ("GET", "staff.search_codes"): PROVIDER_ONLY,
    ("POST", "staff.add_line"): PROVIDER_ONLY,
    ("POST", "staff.remove_line"): PROVIDER_ONLY,
    ("GET", "staff.review"): PROVIDER_ONLY,
    ("POST", "staff.sign"): PROVIDER_ONLY,
    ("POST", "staff.add_addendum"): PROVIDER_ONLY,
}


def _visit(factories):
    from app.models import Appointment

    visit = factories.appointment_type(payment_timing="post_visit", price_cents=0)
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    start = datetime(2026, 12, 8, 15, 0, tzinfo=timezone.utc)
    appointment = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit.id, status="checked_in",
                              starts_at=start, ends_at=start + timedelta(minutes=30), blocked_start=start,
                              blocked_end=start + timedelta(minutes=30), price_cents=0,
                              payment_timing=visit.payment_timing, modality=visit.modality)
    factories.session.add(appointment)
    factories.session.commit()
    return appointment


def _appointment(factories):
    return {"appointment_id": _visit(factories).id}


def _encounter(factories):
    from app.models import Encounter

    appointment = _visit(factories)
    encounter = Encounter(appointment_id=appointment.id, patient_id=appointment.patient_id,
                          provider_id=appointment.provider_id, status="open", version=1,
                          opened_at=appointment.starts_at, opened_from="day_view")
    factories.session.add(encounter)
    factories.session.commit()
    return encounter


def _encounter_id(factories):
    return {"encounter_id": _encounter(factories).id}


EMR_SAMPLE_ARGS = {
    "staff.encounter_for_appointment": _appointment,
    "staff.encounter": _encounter_id,
    "staff.save_draft": _encounter_id,
    "staff.search_diagnoses": _encounter_id,
    "staff.add_diagnosis": _encounter_id,
    "staff.remove_diagnosis": lambda factories: {"encounter_id": _encounter(factories).id, "diagnosis_id": 1},
    "staff.search_codes": _encounter_id,
    "staff.add_line": _encounter_id,
    "staff.remove_line": lambda factories: {"encounter_id": _encounter(factories).id, "line_id": 1},
    "staff.review": _encounter_id,
    "staff.sign": _encounter_id,
    "staff.add_addendum": _encounter_id,
}
