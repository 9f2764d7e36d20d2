"""Fixtures for payment tests: a held appointment, and a 'browser' that pays the
way Stripe.js does (publishable key + client secret), through the sandbox."""
from datetime import datetime, timezone

import pytest
import stripe

from app.services import booking
from app.services.audit import Actor

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


@pytest.fixture
def sandbox(stripe_sandbox):
    if stripe_sandbox is None:
        pytest.fail("payment tests need the Stripe sandbox (unset STRIPE_SECRET_KEY)")
    yield stripe_sandbox
    stripe_sandbox.reset_faults()
    stripe_sandbox.remove_webhook_endpoints()


@pytest.fixture
def held(db, factories, clock, policy, sandbox):
    """A deposit-to-book hold: Monday 10:00 New York, $125.00, for a fresh patient."""
    visit = factories.appointment_type(name="Video consult", price_cents=12500, payment_timing="deposit_to_book")
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=MON_10_NY, policy=policy,
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    return appointment


class Browser:
    """Does what the sandbox's Stripe.js does for confirmPayment, with the publishable key."""

    def __init__(self, sandbox):
        self.http = stripe.RequestsClient()
        self.pk = stripe.StripeClient(sandbox.publishable_key, base_addresses={"api": sandbox.api_base},
                                      http_client=self.http)
        self.sandbox = sandbox

    def pay(self, attempt, number: str):
        """Confirm the attempt's intent with a test card; returns the intent (or the card error)."""
        pm = self.pk.v1.payment_methods.create(params={"type": "card", "card": {
            "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        try:
            return self.pk.v1.payment_intents.confirm(attempt.stripe_payment_intent_id, params={
                "payment_method": pm.id, "client_secret": attempt.client_secret,
                "return_url": "http://127.0.0.1/return"})
        except stripe.CardError as error:
            return error

    def authenticate(self, attempt, success=True):
        return self.sandbox.complete_3ds(attempt.stripe_payment_intent_id, success=success)


@pytest.fixture
def browser_pay(sandbox):
    b = Browser(sandbox)
    yield b
    b.http.close()
