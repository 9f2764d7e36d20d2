"""Stripe misbehaving during a refund: still exactly one refund at Stripe, never more than captured."""
from datetime import timedelta

from app.jobs.refunds import resume_unsent
from tests.helpers.refunds import audits, charge_of, refund_page, refunds_of, stripe_refunds

SDK_TRIES = 3            # the gateway's StripeClient: max_network_retries=2
ROUNDS = 3               # the gateway's reconcile rounds


def test_500_after_the_refund_was_made_still_refunds_once(db, client, forms, book, login_as, sandbox, stripe_admin):
    appointment, attempt = book()
    charge = charge_of(db, appointment.id)
    login_as("billing")
    sandbox.inject_faults("error_after", count=SDK_TRIES + 2, path="/v1/refunds", method="POST")
    assert refund_page(forms, charge.id, amount="40").status_code == 303
    [refund] = refunds_of(db, charge.id)
    [at_stripe] = stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)
    assert (refund.status, refund.stripe_refund_id, at_stripe["amount"]) == ("succeeded", at_stripe["id"], 4000)
    assert len(audits(db, appointment.id, "refund.created")) == 1


def test_stripe_unreachable_keeps_the_refund_and_the_sweep_sends_it_once(db, client, forms, book, login_as, clock,
                                                                         queue, sandbox, stripe_admin):
    appointment, attempt = book()
    charge = charge_of(db, appointment.id)
    login_as("billing")
    sandbox.inject_faults("error_before", count=SDK_TRIES * ROUNDS, path="/v1/refunds", method="POST")
    response = refund_page(forms, charge.id, amount="40")
    assert response.status_code == 303
    assert "will be sent automatically" in client.get(response.headers["Location"]).get_data(as_text=True)
    [refund] = refunds_of(db, charge.id)
    assert (refund.status, refund.stripe_refund_id) == ("creating", None)
    assert charge_of(db, appointment.id).amount_refunded_cents == 4000      # reserved: no over-refund meanwhile
    assert stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id) == []

    sandbox.reset_faults()
    clock.advance(timedelta(minutes=5))
    assert resume_unsent() == 1
    assert resume_unsent() == 0
    [refund] = refunds_of(db, charge.id)
    [at_stripe] = stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)
    assert (refund.status, refund.stripe_refund_id, at_stripe["amount"]) == ("succeeded", at_stripe["id"], 4000)
    assert at_stripe["metadata"]["refund_uuid"] == str(refund.uuid)
