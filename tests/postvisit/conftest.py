"""Post-visit booking fixtures: a held post-visit appointment. (``card_browser``, saving a card the way
Stripe.js's confirmSetup does, is a shared payment fixture: tests/helpers/fixtures_payments.py.)"""
import pytest

from tests.helpers.payments import drain


@pytest.fixture(autouse=True)
def _clean_queue(app):
    """Holds and bookings here schedule RQ jobs (hold expiry, notifications): leave the queue empty."""
    drain(app)
    yield
    drain(app)


@pytest.fixture
def post_visit_hold(db, factories, clock, policy, sandbox):
    """A post-visit hold: Monday 10:00 New York (the type's usual price $180.00: nothing due now)."""
    from app.services import booking
    from app.services.audit import Actor
    from tests.helpers.payments import MON_10_NY

    visit = factories.appointment_type(name="In-person visit", price_cents=18000, payment_timing="post_visit",
                                       modality="in_person")
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=MON_10_NY, policy=policy,
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    return appointment
