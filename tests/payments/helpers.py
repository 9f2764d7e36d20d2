"""Shared steps for the deposit-to-book integration tests (imported by the test modules)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import stripe
from sqlalchemy import func, select

from app.jobs import get_queue, set_app
from app.services.gateway import gateway
from app.services import settlement
from app.services.settlement import timings
from app.models import Appointment, AuditEvent, PaymentAttempt, StripeEvent
from app.services import payments
from app.services.audit import Actor
from tests.conftest import csrf_from, login

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


@pytest.fixture
def stripe_admin(sandbox):
    admin = StripeAdmin(sandbox)
    yield admin
    admin.http.close()


@pytest.fixture
def queue(app):
    """This run's RQ queue, emptied (ids restart per test, so no stale job may act on a new row)."""
    set_app(app)
    q = get_queue("default", app)
    _empty(q)
    yield q
    _empty(q)


def _empty(q) -> None:
    from rq.exceptions import NoSuchJobError

    q.empty()
    registry = q.scheduled_job_registry
    for job_id in registry.get_job_ids():
        try:
            registry.remove(job_id, delete_job=True)
        except NoSuchJobError:            # its data already expired: drop the entry itself
            q.connection.zrem(registry.key, job_id)


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


__all__ = ["SUCCESS", "PAYMENT_ACTIONS", "start", "settle", "fresh", "audit_rows", "count_action",
           "stored_events", "stripe_admin", "queue", "assert_captured_once", "sign_in", "checkout_page",
           "complete", "Appointment", "PaymentAttempt", "StripeEvent", "timedelta", "csrf_from"]
