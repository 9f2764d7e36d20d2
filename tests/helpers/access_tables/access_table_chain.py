"""Expected status per role for the audit chain page and its exports (merged into test_access.EXPECTED).

Billing and admin only; the sample appointment is made in the test's database."""
from datetime import datetime, timedelta, timezone

BILLING_ONLY = dict(anonymous=302, patient=403, provider=403, billing=200, admin=200)

CHAIN_EXPECTED = {
    ("GET", "chain.show"): BILLING_ONLY,
    ("GET", "chain.export_csv"): BILLING_ONLY,
    ("GET", "chain.export_json"): BILLING_ONLY,
}


def _appointment(factories):
    from app.models import Appointment

    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    start = datetime(2026, 12, 8, 15, 0, tzinfo=timezone.utc)
    appointment = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit.id, status="held",
                              starts_at=start, ends_at=start + timedelta(minutes=30), blocked_start=start,
                              blocked_end=start + timedelta(minutes=30), hold_expires_at=start,
                              price_cents=visit.price_cents, payment_timing=visit.payment_timing,
                              modality=visit.modality)
    factories.session.add(appointment)
    factories.session.commit()
    return {"appointment_id": appointment.id}


CHAIN_SAMPLE_ARGS = {name: _appointment for (_, name) in CHAIN_EXPECTED}
