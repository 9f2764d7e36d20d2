"""Stripe answers 500 after doing the work, more times than the SDK retries: still one intent, one capture."""
from tests.helpers.payments import (SUCCESS, Appointment, PaymentAttempt, assert_captured_once, count_action, fresh,
                                    settle, start)

SDK_TRIES = 3            # the gateway's StripeClient: max_network_retries=2


def test_500_after_create_more_times_than_the_sdk_retries(app, db, held, clock, browser_pay, sandbox,
                                                          stripe_admin):
    sandbox.inject_faults("error_after", count=SDK_TRIES + 2, path="/v1/payment_intents", method="POST")
    attempt = start(db, held, clock)
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert attempt.stripe_payment_intent_id and attempt.client_secret
    customer = attempt.charge.appointment.patient.stripe_customer_id
    intents = stripe_admin.intents_of(customer)
    assert [pi.id for pi in intents] == [attempt.stripe_payment_intent_id]
    assert intents[0].metadata["attempt_uuid"] == str(attempt.uuid)
    assert count_action(db, held.id, "payment.attempted") == 1

    sandbox.reset_faults()
    browser_pay.pay(attempt, SUCCESS)
    assert settle(db, attempt).state == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def test_500_after_capture_more_times_than_the_sdk_retries(app, db, held, clock, browser_pay, sandbox,
                                                           stripe_admin):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    sandbox.inject_faults("error_after", count=SDK_TRIES + 2,
                          path=f"/v1/payment_intents/{attempt.stripe_payment_intent_id}/capture", method="POST")
    assert settle(db, attempt).state == "confirmed"
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)
    assert settle(db, attempt, source="webhook").state == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def test_connection_dropped_after_create_and_capture(app, db, held, clock, browser_pay, sandbox, stripe_admin):
    sandbox.inject_faults("drop_after", count=SDK_TRIES + 1, path="/v1/payment_intents", method="POST")
    attempt = start(db, held, clock)
    sandbox.reset_faults()
    attempt = fresh(db, PaymentAttempt, attempt.id)
    browser_pay.pay(attempt, SUCCESS)
    sandbox.inject_faults("drop_after", count=SDK_TRIES + 1,
                          path=f"/v1/payment_intents/{attempt.stripe_payment_intent_id}/capture", method="POST")
    assert settle(db, attempt).state == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)
