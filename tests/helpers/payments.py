"""Shared steps for the payment tests: open and settle an attempt, read what the audit trail,
the consents and Stripe hold, 'browsers' that pay or save a card the way Stripe.js does, a card
attached to a Customer, a deposit paid and captured through the Stripe sandbox for tests that need
a real payment, and a recording of every request the app sends to Stripe (the PHI checks). (The
fixtures built on these live in tests/helpers/fixtures_payments.py.)"""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import stripe
from rq.exceptions import NoSuchJobError
from sqlalchemy import func, select

from app.jobs import get_queue, set_app
from app.services.gateway import gateway
from app.services import booking, settlement
from app.services.settlement import timings
from app.models import Appointment, AuditEvent, PaymentAttempt, PaymentConsent, StripeEvent
from app.services import payments
from app.services.audit import Actor
from tests.helpers.web import csrf_from, login

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
SUCCESS = "4242424242424242"
PAYMENT_ACTIONS = ("payment.attempted", "payment.requires_action", "payment.declined", "payment.succeeded",
                   "payment.captured", "payment.canceled")


def start(db, held, clock) -> PaymentAttempt:
    """What the checkout page does: open the attempt (UUID stored first), then create its intent."""
    attempt = payments.open_attempt(db, appointment=held, patient=held.patient, now=clock.now())
    db.commit()
    payments.create_intent(db, gateway(), attempt, patient=held.patient, appointment=held,
                           actor=Actor.system("test"), now=clock.now(), timings=timings())
    db.commit()
    return attempt


def settle(db, attempt, source="browser"):
    return settlement.settle(db, attempt.id, source=source, actor=Actor.system("test"))


def fresh(db, model, id_):
    db.expire_all()
    return db.get(model, id_)


def audit_rows(db, appointment_id, action=None):
    query = select(AuditEvent).where(AuditEvent.appointment_id == appointment_id).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(db.scalars(query))


def count_action(db, appointment_id, action) -> int:
    return len(audit_rows(db, appointment_id, action))


def stored_events(db) -> int:
    return db.scalar(select(func.count()).select_from(StripeEvent))


def consents(db, appointment_id) -> list[PaymentConsent]:
    """The appointment's payment consents, oldest first."""
    db.expire_all()
    return list(db.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment_id)
                           .order_by(PaymentConsent.id)))


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


class CardBrowser:
    """What the sandbox's Stripe.js does for confirmSetup, with the publishable key."""

    def __init__(self, sandbox):
        self.http = stripe.RequestsClient()
        self.pk = stripe.StripeClient(sandbox.publishable_key, base_addresses={"api": sandbox.api_base},
                                      http_client=self.http)
        self.sandbox = sandbox

    def save(self, setup, number: str):
        """Confirm the setup's SetupIntent with a test card; the SetupIntent, or the card error."""
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


class StripeAdmin:
    """The secret-key view of the sandbox: what Stripe itself holds."""

    def __init__(self, sandbox):
        self.http = stripe.RequestsClient()
        self.client = stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base},
                                          http_client=self.http, max_network_retries=0)

    def intent(self, intent_id):
        return self.client.v1.payment_intents.retrieve(intent_id)

    def intents_of(self, customer_id) -> list:
        return list(self.client.v1.payment_intents.list(params={"customer": customer_id, "limit": 100})
                    .auto_paging_iter())

    def charges_of(self, intent_id) -> list:
        return [c for c in self.client.v1.charges.list(params={"limit": 100}).auto_paging_iter()
                if c.to_dict().get("payment_intent") == intent_id]

    def customers(self) -> list:
        return list(self.client.v1.customers.list(params={"limit": 100}).auto_paging_iter())


def attach_card(browser_pay, stripe_admin, customer: str, number: str = SUCCESS) -> str:
    """A test card made with the publishable key and attached to ``customer``; its PaymentMethod id."""
    pm = browser_pay.pk.v1.payment_methods.create(params={"type": "card", "card": {
        "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    stripe_admin.client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    return pm.id


class Recording(stripe.RequestsClient):
    """An HTTP client for the Stripe SDK that keeps (method, url, body) of every request it sends."""

    def __init__(self):
        super().__init__()
        self.sent: list[tuple[str, str, str]] = []

    def request(self, method, url, headers, post_data=None):
        self.sent.append((method, url, post_data or ""))
        return super().request(method, url, headers, post_data)


@contextmanager
def recording_stripe(app):
    """The app's gateway (the live server's too: one app) through a Recording client, for the block."""
    from app.integrations.stripe_gateway import StripeGateway

    recording = Recording()
    original = app.extensions.get("stripe_gateway")
    app.extensions["stripe_gateway"] = StripeGateway.from_settings(app.config["SETTINGS"], http_client=recording)
    try:
        yield recording
    finally:
        app.extensions["stripe_gateway"] = original
        recording.close()


def assert_captured_once(db, stripe_admin, attempt_id, amount=12500):
    attempt = fresh(db, PaymentAttempt, attempt_id)
    assert attempt.status == "succeeded"
    assert attempt.amount_captured_cents == amount
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert intent.status == "succeeded" and intent.amount_received == amount
    customer = attempt.charge.appointment.patient.stripe_customer_id
    assert [pi.id for pi in stripe_admin.intents_of(customer)] == [attempt.stripe_payment_intent_id]
    captured = [c for c in stripe_admin.charges_of(attempt.stripe_payment_intent_id) if c.to_dict().get("captured")]
    assert len(captured) == 1 and captured[0].amount_captured == amount
    assert count_action(db, attempt.charge.appointment_id, "payment.captured") == 1
    return attempt


def sign_in(client, user):
    """Sign ``user`` in on a Flask test client (pages in a browser: tests.helpers.phone.sign_in)."""
    response = login(client, user.email)
    assert response.status_code == 303, response.get_data(as_text=True)


def checkout_page(client, appointment_id):
    """GET the checkout page; returns (response, client_secret, csrf)."""
    response = client.get(f"/checkout/{appointment_id}")
    html = response.get_data(as_text=True)
    secret = re.search(r'data-client-secret="([^"]*)"', html)
    csrf = re.search(r'data-csrf="([^"]*)"', html)
    return response, secret and secret.group(1), csrf and csrf.group(1)


def complete(client, appointment_id, csrf):
    return client.post(f"/checkout/{appointment_id}/complete", headers={"X-CSRFToken": csrf})


def drain(app) -> None:
    """Empty this run's queue and its scheduled jobs (hold expiry, polls), tolerating entries whose job is gone."""
    set_app(app)
    q = get_queue("default", app)
    q.empty()
    registry = q.scheduled_job_registry
    for job_id in registry.get_job_ids():
        try:
            registry.remove(job_id, delete_job=True)
        except NoSuchJobError:
            registry.remove(job_id)


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


__all__ = ["SUCCESS", "PAYMENT_ACTIONS", "MON_10_NY", "start", "settle", "fresh", "audit_rows", "count_action",
           "stored_events", "consents", "Browser", "CardBrowser", "StripeAdmin", "attach_card", "Recording",
           "recording_stripe", "assert_captured_once", "sign_in", "checkout_page", "complete", "drain",
           "paid_appointment", "Appointment", "PaymentAttempt", "StripeEvent", "timedelta", "csrf_from"]
