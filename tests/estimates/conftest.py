"""Estimate fixtures: a LOCAL code priced on the fee schedule, a hybrid type expecting it and coverages
made directly with the models. (The clinic's payers and fresh simulator members, never a demo member
whose accumulators another test may move, are shared: tests/helpers/fixtures_insurance.py.)"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from tests.helpers.payments import drain

UTC = timezone.utc
CODE_PRICE = 15000           # LOC-FOLLOWUP's price in these tests


@pytest.fixture(autouse=True)
def _clean_queue(app):
    drain(app)
    yield
    drain(app)


@pytest.fixture
def follow_up_code(db):
    """LOCAL LOC-FOLLOWUP at $150.00 from 2025-01-01."""
    from app.services import codes, fees
    from app.services.audit import Actor

    codes.seed_shipped(db, Actor.system("test"))
    code = codes.find(db, "LOC-FOLLOWUP")[0]
    fees.set_price(db, code_id=code.id, modifier="", price_cents=CODE_PRICE, effective_from=date(2025, 1, 1),
                   actor=Actor.system("test"))
    db.commit()
    return code


@pytest.fixture
def hybrid_type(factories, follow_up_code):
    return factories.appointment_type(
        name="Follow-up (insurance)", price_cents=4000, payment_timing="hybrid", modality="telehealth",
        expected_codes=[{"system": "LOCAL", "code": "LOC-FOLLOWUP", "modifier": "", "units": 1}],
        deposit_rule="estimate")


@pytest.fixture
def coverage(db, payers):
    """coverage(patient, member_id, payer_id='AETNA-DEMO', rank='primary') -> an active Coverage."""
    from app.models import Coverage

    def make(patient, member_id, payer_id="AETNA-DEMO", rank="primary"):
        row = Coverage(patient_id=patient.id, rank=rank, payer_id=payer_id, member_id=member_id,
                       subscriber_name="Maria Alvarez", subscriber_birth_date="1984-03-09",
                       subscriber_relationship="self", status="active")
        db.add(row)
        db.commit()
        return row
    return make


@pytest.fixture
def appointment_for(db, factories):
    """appointment_for(patient, visit_type, starts_at, status='confirmed') -> an Appointment row."""
    from app.models import Appointment

    def make(patient, visit_type, starts_at, status="confirmed", provider=None):
        provider = provider or factories.provider(types=[visit_type])
        row = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit_type.id, status=status,
                          starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30), blocked_start=starts_at,
                          blocked_end=starts_at + timedelta(minutes=30), price_cents=visit_type.price_cents,
                          payment_timing=visit_type.payment_timing, modality=visit_type.modality,
                          confirmed_at=None,
                          hold_expires_at=starts_at - timedelta(hours=1) if status == "held" else None)
        db.add(row)
        db.commit()
        return row
    return make


@pytest.fixture
def job_actor():
    from app.services.audit import Actor

    return Actor.system("test")


def now_of(clock) -> datetime:
    return clock.now()
