"""Hybrid deposit fixtures: a held hybrid appointment with its Estimate attached, made directly with
the models (no intake or estimate pages needed). (``card_browser``, the Stripe.js-like 'browser' for
SetupIntents, is a shared payment fixture: tests/helpers/fixtures_payments.py.)"""
from datetime import datetime, timezone

import pytest

from tests.helpers.payments import drain

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)      # the test clock is Monday 08:00 New York
PRICE = 4000            # the type's price: never what a hybrid deposit charges
BILLED, INSURER, SHARE, DEPOSIT = 15000, 7000, 3000, 3000


@pytest.fixture(autouse=True)
def _clean_queue(app):
    drain(app)
    yield
    drain(app)


def attach_estimate(db, appointment, *, deposit_cents=DEPOSIT, patient_cents=SHARE, kind="insured"):
    """The Estimate H2's ``estimates.attach`` leaves on a hybrid hold (Estimate.appointment_id)."""
    from app.models import Estimate

    estimate = Estimate(
        patient_id=appointment.patient_id, appointment_type_id=appointment.type_id, appointment_id=appointment.id,
        kind=kind, lines=[{"system": "CPT", "code": "99213", "modifier": "", "units": 1, "billed_cents": BILLED,
                           "allowed_cents": INSURER + patient_cents}],
        billed_cents=BILLED, allowed_cents=INSURER + patient_cents, copay_cents=0, deductible_cents=patient_cents,
        coinsurance_cents=0, patient_cents=patient_cents, insurer_cents=INSURER if kind == "insured" else 0,
        deposit_rule="estimate", deposit_cents=deposit_cents, good_faith=kind == "self_pay")
    db.add(estimate)
    db.commit()
    return estimate


@pytest.fixture
def make_hybrid_hold(db, factories, clock, policy, sandbox):
    """make_hybrid_hold(deposit_cents=3000, estimate=True, patient=None, **type_fields) -> a held
    hybrid appointment (Monday 10:00 New York, the type's price $40.00) with its Estimate."""
    from app.services import booking
    from app.services.audit import Actor

    def _make(deposit_cents=DEPOSIT, estimate=True, patient=None, starts_at=MON_10_NY, **type_fields):
        fields = dict(name="Follow-up (insurance)", price_cents=PRICE, payment_timing="hybrid",
                      modality="telehealth")
        fields.update(type_fields)
        visit = factories.appointment_type(**fields)
        provider = factories.provider(types=[visit])
        patient = patient or factories.patient()
        appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                        type_id=visit.id, starts_at=starts_at, policy=policy,
                                        actor=Actor("user", patient.user_id, "patient"))
        db.commit()
        if estimate:
            attach_estimate(db, appointment, deposit_cents=deposit_cents,
                            patient_cents=max(SHARE, deposit_cents))
        return appointment

    return _make


@pytest.fixture
def hybrid_hold(make_hybrid_hold):
    """A held hybrid appointment whose estimate asks a $30.00 deposit (the type's price is $40.00)."""
    return make_hybrid_hold()
