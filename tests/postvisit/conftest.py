"""Post-visit booking fixtures: a held post-visit appointment, and a 'browser' that saves a card
the way Stripe.js's confirmSetup does (publishable key + the SetupIntent's client secret)."""
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


class CardBrowser:
    """What the sandbox's Stripe.js does for confirmSetup, with the publishable key."""

    def __init__(self, sandbox):
        import stripe

        self.http = stripe.RequestsClient()
        self.pk = stripe.StripeClient(sandbox.publishable_key, base_addresses={"api": sandbox.api_base},
                                      http_client=self.http)
        self.sandbox = sandbox

    def save(self, setup, number: str):
        """Confirm the setup's SetupIntent with a test card; the SetupIntent, or the card error."""
        import stripe

        pm = self.pk.v1.payment_methods.create(params={"type": "card", "card": {
            "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        try:
            return self.pk.v1.setup_intents.confirm(setup.stripe_setup_intent_id, params={
                "payment_method": pm.id, "client_secret": setup.client_secret,
                "return_url": "http://127.0.0.1/return"})
        except stripe.CardError as error:
            return error

    def authenticate(self, setup, success=True):
        return self.sandbox.complete_3ds(setup.stripe_setup_intent_id, success=success)


@pytest.fixture
def card_browser(sandbox):
    b = CardBrowser(sandbox)
    yield b
    b.http.close()
