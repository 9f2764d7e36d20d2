"""EMR fixtures: a post-visit appointment booked for Monday 10:00 New York (the clock says 08:00),
the shipped codes with prices, and the provider who will document it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from app.models import Appointment, BillingCode, Provider
from app.services import booking, codes, fees
from app.services.audit import Actor

SYSTEM = Actor.system("test")
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)
PRICED_FROM = date(2026, 1, 1)
CONSULT_CENTS = 15000
FORMS_CENTS = 2500


@dataclass
class Visit:
    appointment: Appointment
    provider: Provider
    codes: dict[str, BillingCode]

    @property
    def actor(self) -> Actor:
        return Actor("user", self.provider.user_id, "provider")

    @property
    def user(self):
        return self.provider.user


@pytest.fixture
def priced_codes(db):
    codes.seed_shipped(db, SYSTEM)
    db.commit()
    found = {c.code: c for c in db.scalars(select(BillingCode))}
    fees.set_price(db, code_id=found["LOC-CONSULT"].id, modifier="", price_cents=CONSULT_CENTS,
                   effective_from=PRICED_FROM, actor=SYSTEM)
    fees.set_price(db, code_id=found["LOC-FORMS"].id, modifier="", price_cents=FORMS_CENTS,
                   effective_from=PRICED_FROM, actor=SYSTEM)
    db.commit()
    return found


@pytest.fixture
def book_visit(db, factories, clock, policy, priced_codes):
    """book_visit(provider=None, starts_at=MON_10_NY) -> Visit: a confirmed post-visit appointment."""
    def _book(provider=None, starts_at=MON_10_NY, timing="post_visit") -> Visit:
        visit_type = factories.appointment_type(name="Follow-up visit", price_cents=0, payment_timing=timing)
        if provider is None:
            provider = factories.provider(types=[visit_type], full_name="Dr. Ada Quill")
        else:
            provider.types = [*provider.types, visit_type]
            db.commit()
        patient = factories.patient(full_name="Pat Example")
        actor = Actor("user", patient.user_id, "patient")
        appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                        type_id=visit_type.id, starts_at=starts_at, policy=policy, actor=actor)
        booking.confirm(db, appointment, actor=actor, now=clock.now())
        db.commit()
        return Visit(appointment, provider, priced_codes)
    return _book


@pytest.fixture
def visit(book_visit) -> Visit:
    return book_visit()
