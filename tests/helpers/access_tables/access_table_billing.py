"""Expected status per role for the billing pages and the receipt (merged into test_access.EXPECTED).

Billing pages are for billing and admin; the sample payment is made in the
test's database, so they get the real page (and 422 for an empty refund form).
The receipt is the patient's own: the table's patient asks for another
patient's appointment and gets 404, staff get 403 before any lookup."""
from datetime import datetime, timedelta, timezone

LOGIN, DENY = 302, 403
BILLING = dict(anonymous=LOGIN, patient=DENY, provider=DENY)


def _payment(factories):
    """A captured deposit of another patient: its charge id and appointment id."""
    from app.models import Appointment, Charge, PaymentAttempt

    session = factories.session
    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    starts = datetime(2030, 1, 7, 15, 0, tzinfo=timezone.utc)
    appt = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit.id, status="confirmed",
                       starts_at=starts, ends_at=starts + timedelta(minutes=30), blocked_start=starts,
                       blocked_end=starts + timedelta(minutes=30), price_cents=12500,
                       payment_timing="deposit_to_book", modality="telehealth")
    session.add(appt)
    session.flush()
    charge = Charge(appointment_id=appt.id, purpose="deposit", amount_cents=12500, status="captured",
                    amount_captured_cents=12500, amount_refunded_cents=0)
    session.add(charge)
    session.flush()
    session.add(PaymentAttempt(charge_id=charge.id, number=1, status="succeeded", amount_cents=12500,
                               amount_captured_cents=12500, stripe_payment_intent_id=f"pi_access_{charge.id}"))
    session.commit()
    return charge.id, appt.id


BILLING_EXPECTED = {
    ("GET", "billing.payments"): dict(BILLING, billing=200, admin=200),
    ("GET", "billing.payment"): dict(BILLING, billing=200, admin=200),
    ("POST", "billing.refund"): dict(BILLING, billing=422, admin=422),
    ("GET", "booking.receipt"): dict(anonymous=LOGIN, patient=404, provider=DENY, billing=DENY, admin=DENY),
}
BILLING_SAMPLE_ARGS = {
    "billing.payment": lambda factories: {"charge_id": _payment(factories)[0]},
    "billing.refund": lambda factories: {"charge_id": _payment(factories)[0]},
    "booking.receipt": lambda factories: {"appointment_id": _payment(factories)[1]},
}


# -- post-visit collections (billing) and the patient's statement (issue 14) -----------------------

def _case(factories, status="collections"):
    """A signed post-visit visit of another patient with its collections case: the case id."""
    from tests.postvisit.test_statements import signed_visit

    return signed_visit(factories.session, factories, status=status).case.id


def _signed_appointment(factories):
    """A signed post-visit visit of another patient: its appointment id."""
    from tests.postvisit.test_statements import signed_visit

    return signed_visit(factories.session, factories).appointment.id


BILLING_EXPECTED.update({
    ("GET", "billing.collections"): dict(BILLING, billing=200, admin=200),
    ("POST", "billing.final_notice"): dict(BILLING, billing=303, admin=303),
    ("POST", "billing.send_to_agency"): dict(BILLING, billing=303, admin=303),
    ("POST", "billing.start_plan"): dict(BILLING, billing=422, admin=422),
    ("POST", "billing.write_off"): dict(BILLING, billing=422, admin=422),
    ("GET", "booking.statement"): dict(anonymous=LOGIN, patient=404, provider=DENY, billing=DENY, admin=DENY),
    ("GET", "booking.statement_pdf"): dict(anonymous=LOGIN, patient=404, provider=DENY, billing=DENY, admin=DENY),
})
BILLING_SAMPLE_ARGS.update({
    "billing.final_notice": lambda factories: {"case_id": _case(factories)},
    "billing.send_to_agency": lambda factories: {"case_id": _case(factories)},
    "billing.start_plan": lambda factories: {"case_id": _case(factories)},
    "billing.write_off": lambda factories: {"case_id": _case(factories)},
    "booking.statement": lambda factories: {"appointment_id": _signed_appointment(factories)},
    "booking.statement_pdf": lambda factories: {"appointment_id": _signed_appointment(factories)},
})
