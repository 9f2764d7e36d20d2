"""The database alone finishes the payment work a crash or a lost queue left behind.

Each test leaves things as a crash would, empties the queue (Redis lost the jobs), and runs the
periodic sweep: the attempt's intent is found and adopted, an attempt Stripe never heard of is
given up, a payment no path settled is settled, and an intent no attempt owns is canceled.
"""
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

from app.jobs.payments import sweep_payments
from app.models import Appointment, PaymentAttempt
from app.services import payments, settlement
from app.services.audit import Actor
from app.services.gateway import gateway
from tests.helpers.payments import SUCCESS, assert_captured_once, audit_rows, count_action, fresh, start


@pytest.fixture
def quiet_now(app, monkeypatch):
    """The sweep treats every attempt as quiet long enough (PAYMENT_QUIET = 0)."""
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], PAYMENT_QUIET=timedelta(0)))


def test_an_intent_made_before_a_crash_is_found_by_our_metadata_and_adopted(
        app, db, held, clock, browser_pay, stripe_admin, queue, quiet_now):
    attempt = payments.open_attempt(db, appointment=held, patient=held.patient, now=clock.now())
    db.commit()
    # The request made the customer and the intent, then died before recording the answer.
    customer = payments.ensure_customer(db, gateway(), held.patient, key=attempt.key("customer"))
    db.commit()
    made = gateway().create_intent(
        key=attempt.key("create"), amount=attempt.amount_cents, currency=attempt.currency, customer=customer,
        metadata={"attempt_uuid": str(attempt.uuid), "appointment_id": str(held.id),
                  "charge_id": str(attempt.charge_id), "patient_id": str(held.patient_id)},
        description=f"Appointment {held.id} deposit", save_card=False)
    assert fresh(db, PaymentAttempt, attempt.id).status == "creating"
    queue.empty()

    result = sweep_payments()
    assert result["reconciled"] == 1
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert (attempt.stripe_payment_intent_id, attempt.status) == (made.id, "requires_payment_method")
    assert attempt.client_secret == made.client_secret
    assert len(audit_rows(db, held.id, "payment.reconciled")) == 1
    assert [pi.id for pi in stripe_admin.intents_of(customer)] == [made.id]    # no second intent

    # The patient pays on the same intent; one booking, one capture.
    browser_pay.pay(attempt, SUCCESS)
    assert settlement.settle(db, attempt.id, source="browser", actor=Actor.system("test")).state == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def test_an_attempt_stripe_never_heard_of_is_given_up_and_checkout_opens_a_new_one(
        app, db, held, clock, stripe_admin, queue, quiet_now):
    attempt = payments.open_attempt(db, appointment=held, patient=held.patient, now=clock.now())
    db.commit()                                          # ...and the process died before calling Stripe
    queue.empty()

    assert sweep_payments()["reconciled"] == 1
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert attempt.status == "canceled" and "abandoned" in attempt.cancellation_reason
    assert sweep_payments().get("reconciled", 0) == 0   # once

    again = start(db, fresh(db, Appointment, held.id), clock)
    assert again.id != attempt.id and again.number == 2
    assert fresh(db, PaymentAttempt, again.id).status == "requires_payment_method"


def test_a_payment_no_path_settled_is_settled_by_the_sweep(app, db, held, clock, browser_pay, stripe_admin,
                                                            queue, quiet_now):
    attempt = start(db, held, clock)
    assert browser_pay.pay(attempt, SUCCESS).status == "requires_capture"
    queue.empty()                                        # the poll job is lost; the page never came back

    assert sweep_payments()["polled"] == 1
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)
    assert count_action(db, held.id, "booking.confirmed") == 1


def test_an_authorization_no_attempt_owns_is_canceled(app, db, held, clock, browser_pay, stripe_admin, queue,
                                                      quiet_now):
    attempt = start(db, held, clock)
    customer = fresh(db, Appointment, held.id).patient.stripe_customer_id
    stray = gateway().create_intent(key=f"stray-{uuid4()}", amount=4000, currency="usd", customer=customer,
                                    metadata={"attempt_uuid": str(uuid4())}, description="stray",
                                    save_card=False)
    assert browser_pay.pay(SimpleNamespace(stripe_payment_intent_id=stray.id, client_secret=stray.client_secret),
                           SUCCESS).status == "requires_capture"       # money held on the patient's card

    result = sweep_payments()
    assert result["unowned_canceled"] == 1
    assert stripe_admin.intent(stray.id).status == "canceled"
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "requires_payment_method"  # ours stays
    assert sweep_payments().get("unowned_canceled", 0) == 0
