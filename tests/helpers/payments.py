"""A deposit paid and captured through the Stripe sandbox, for tests that need a real payment."""
from __future__ import annotations

from datetime import datetime

import stripe

from app.services import booking
from app.services.audit import Actor
from tests.payments.helpers import SUCCESS, settle, start


def paid_appointment(db, factories, clock, policy, sandbox, *, starts_at: datetime, price_cents: int = 12500):
    """A confirmed appointment whose deposit the 'browser' paid with a test card; returns it."""
    visit = factories.appointment_type(name="Video consult", price_cents=price_cents,
                                       payment_timing="deposit_to_book")
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=starts_at, policy=policy,
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    attempt = start(db, appointment, clock)
    http = stripe.RequestsClient()
    try:   # what Stripe.js does with the publishable key
        client = stripe.StripeClient(sandbox.publishable_key, base_addresses={"api": sandbox.api_base},
                                     http_client=http)
        method = client.v1.payment_methods.create(params={"type": "card", "card": {
            "number": SUCCESS, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        client.v1.payment_intents.confirm(attempt.stripe_payment_intent_id, params={
            "payment_method": method.id, "client_secret": attempt.client_secret,
            "return_url": "http://127.0.0.1/return"})
    finally:
        http.close()
    assert settle(db, attempt).state == "confirmed"
    db.expire_all()
    return appointment
