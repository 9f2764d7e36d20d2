"""Expected status per role for billing's claims pages (issue 15; merged into test_access.EXPECTED),
and ``sample_claim``: a draft primary claim of a signed hybrid visit, made in the test's database
(the PHI-view test uses it for the clinic's own appointment)."""
from datetime import datetime, timedelta, timezone

LOGIN, DENY = 302, 403
BILLING = dict(anonymous=LOGIN, patient=DENY, provider=DENY)


def sample_claim(session, appointment_id: int | None = None, factories=None) -> int:
    """A draft claim for a signed hybrid encounter of ``appointment_id`` (made when None); reused."""
    import uuid

    from sqlalchemy import select

    from app.models import Appointment, Claim, Coverage, Encounter, Payer

    if appointment_id is None:
        visit = factories.appointment_type(payment_timing="hybrid", price_cents=0)
        provider = factories.provider(types=[visit])
        patient = factories.patient()
        starts = datetime(2030, 1, 7, 15, 0, tzinfo=timezone.utc)
        appt = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit.id, status="completed",
                           starts_at=starts, ends_at=starts + timedelta(minutes=30), blocked_start=starts,
                           blocked_end=starts + timedelta(minutes=30), price_cents=0, payment_timing="hybrid",
                           modality="telehealth")
        session.add(appt)
        session.flush()
        appointment_id = appt.id
    found = session.scalar(select(Claim.id).where(Claim.appointment_id == appointment_id))
    if found is not None:
        return found
    appt = session.get(Appointment, appointment_id)
    if session.get(Payer, "AETNA-DEMO") is None:
        session.add(Payer(id="AETNA-DEMO", name="Aetna (simulated)", default_allowed_percent=60))
        session.flush()
    coverage = Coverage(patient_id=appt.patient_id, rank="primary", payer_id="AETNA-DEMO", member_id="W100000003",
                        subscriber_name="Sample Subscriber", subscriber_birth_date="1980-01-01",
                        subscriber_relationship="self", status="replaced")
    encounter = session.scalar(select(Encounter).where(Encounter.appointment_id == appointment_id))
    if encounter is None:
        encounter = Encounter(appointment_id=appointment_id, patient_id=appt.patient_id, provider_id=appt.provider_id,
                              status="signed", version=1, opened_at=appt.starts_at, signed_at=appt.starts_at,
                              signed_by_id=appt.provider.user_id, content_hash="ef" * 32, total_cents=15000)
        session.add(encounter)
    session.add(coverage)
    session.flush()
    claim = Claim(uuid=uuid.uuid4(), encounter_id=encounter.id, appointment_id=appointment_id, coverage_id=coverage.id,
                  rank="primary", status="draft", billed_cents=15000,
                  lines=[{"line_number": 1, "code_system": "CPT", "code": "99213", "modifiers": [], "units": 1,
                          "billed_cents": 15000, "pointers": [1]}])
    session.add(claim)
    session.commit()
    return claim.id


CLAIMS_EXPECTED = {
    ("GET", "billing.claims_list"): dict(BILLING, billing=200, admin=200),
    ("POST", "billing.check_remittances"): dict(BILLING, billing=303, admin=303),
    ("GET", "billing.claim"): dict(BILLING, billing=200, admin=200),
    ("POST", "billing.submit_claim"): dict(BILLING, billing=303, admin=303),
    ("POST", "billing.record_eob"): dict(BILLING, billing=422, admin=422),
}
CLAIMS_SAMPLE_ARGS = {
    "billing.claim": lambda factories: {"claim_id": sample_claim(factories.session, factories=factories)},
    "billing.submit_claim": lambda factories: {"claim_id": sample_claim(factories.session, factories=factories)},
    "billing.record_eob": lambda factories: {"claim_id": sample_claim(factories.session, factories=factories)},
}
