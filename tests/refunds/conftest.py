"""Fixtures for refund tests: a deposit paid and captured through the sandbox, with the
appointment type's cancellation policy chosen by the test. (sandbox, browser_pay, queue and
stripe_admin are the shared payment fixtures: tests/helpers/fixtures_payments.py.)"""
from datetime import datetime, timezone

import pytest

from app.services import booking
from app.services.audit import Actor
from tests.helpers.payments import SUCCESS, settle, start

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)     # two hours after the test clock's 08:00 New York


@pytest.fixture
def book(db, factories, clock, policy, sandbox, browser_pay):
    """book(pay=True, **type_fields) -> a confirmed appointment, its deposit captured ($125.00)."""

    def _book(pay: bool = True, **type_fields):
        fields = dict(name="Video consult", price_cents=12500, payment_timing="deposit_to_book")
        fields.update(type_fields)
        visit = factories.appointment_type(**fields)
        provider = factories.provider(types=[visit])
        patient = factories.patient()
        appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                        type_id=visit.id, starts_at=MON_10_NY, policy=policy,
                                        actor=Actor("user", patient.user_id, "patient"))
        db.commit()
        attempt = start(db, appointment, clock)
        if pay:
            browser_pay.pay(attempt, SUCCESS)
            assert settle(db, attempt).state == "confirmed"
        db.expire_all()
        return appointment, attempt

    return _book
