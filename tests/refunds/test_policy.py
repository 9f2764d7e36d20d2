"""Cancellation policy refunds: run from the booking_canceled signal through the RQ job."""
from app.jobs.notifications import render
from app.jobs.refunds import refund_canceled_booking
from app.models import Appointment, PaymentAttempt
from tests.helpers.payments import sign_in
from tests.helpers.refunds import (assert_opaque_metadata, audits, charge_of, refund_messages, refunds_of,
                                   run_refund_jobs, stripe_refunds)


def cancel_as_patient(client, forms, appointment):
    sign_in(client, appointment.patient.user)
    page = f"/appointments/{appointment.id}"
    response = forms.post(f"{page}/cancel", {"reason": "Feeling better"}, page=page)
    assert response.status_code == 303, response.get_data(as_text=True)


def test_cancel_before_the_window_is_refunded_in_full_once(db, client, forms, book, queue, stripe_admin):
    appointment, attempt = book(cancellation_window_hours=1)      # the window opens at 09:00; it is 08:00
    cancel_as_patient(client, forms, appointment)

    run_refund_jobs(queue)
    charge = charge_of(db, appointment.id)
    [refund] = refunds_of(db, charge.id)
    assert (refund.amount_cents, refund.policy, refund.status, refund.authorized_by_id) == (
        12500, "cancellation_policy", "succeeded", None)
    assert refund.clinical_reason == "canceled before the cancellation window"
    assert charge.amount_refunded_cents == 12500 and charge.amount_captured_cents == 12500

    [at_stripe] = stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)
    assert (at_stripe["id"], at_stripe["amount"], at_stripe["reason"], at_stripe["status"]) == (
        refund.stripe_refund_id, 12500, "requested_by_customer", "succeeded")
    assert_opaque_metadata(at_stripe, refund)

    [decided] = audits(db, appointment.id, "refund.policy_applied")
    assert decided.details["rule"] == "before_window" and decided.details["refund_cents"] == 12500
    [created] = audits(db, appointment.id, "refund.created")
    assert (created.stripe_object_id, created.reason, created.authorized_by, created.patient_id,
            created.payment_attempt_id) == (refund.stripe_refund_id, "canceled before the cancellation window", None,
                                            appointment.patient_id, attempt.id)
    assert created.details["authorized_by_name"] == "system (policy)"

    # The job again (a retry, a duplicate signal): nothing more moves.
    refund_canceled_booking(appointment.id)
    refund_canceled_booking(appointment.id)
    assert len(stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)) == 1
    assert len(refunds_of(db, charge.id)) == 1 and charge_of(db, appointment.id).amount_refunded_cents == 12500
    assert len(audits(db, appointment.id, "refund.created")) == 1
    assert len(audits(db, appointment.id, "refund.policy_applied")) == 1

    # The patient is told the minimum: amount, date, a link; never the clinical reason.
    [message] = refund_messages(db, appointment.id)
    text = render(db, message).text
    assert "$125.00" in text and f"/appointments/{appointment.id}/receipt" in text
    assert "cancellation window" not in text and "Feeling better" not in text


def test_late_cancel_with_no_refund_policy_refunds_nothing(db, client, forms, book, queue, stripe_admin):
    appointment, attempt = book(cancellation_window_hours=24, late_cancel_policy="none")
    cancel_as_patient(client, forms, appointment)
    run_refund_jobs(queue)
    refund_canceled_booking(appointment.id)                       # twice: decided once

    charge = charge_of(db, appointment.id)
    assert refunds_of(db, charge.id) == [] and charge.amount_refunded_cents == 0
    assert stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id) == []
    [decided] = audits(db, appointment.id, "refund.policy_applied")
    assert (decided.details["rule"], decided.details["refund_cents"]) == ("late_none", 0)
    assert "no refund" in decided.reason
    assert audits(db, appointment.id, "refund.created") == []
    assert refund_messages(db, appointment.id) == []


def test_late_cancel_with_a_fee_keeps_the_fee(db, client, forms, book, queue, stripe_admin):
    appointment, attempt = book(cancellation_window_hours=24, late_cancel_policy="fee", late_cancel_fee_cents=2500)
    cancel_as_patient(client, forms, appointment)
    run_refund_jobs(queue)
    refund_canceled_booking(appointment.id)

    charge = charge_of(db, appointment.id)
    [refund] = refunds_of(db, charge.id)
    assert (refund.amount_cents, refund.policy, refund.status) == (10000, "cancellation_policy", "succeeded")
    assert "late-cancel fee of $25.00 kept" in refund.clinical_reason
    assert charge.amount_refunded_cents == 10000
    [at_stripe] = stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)
    assert (at_stripe["amount"], at_stripe["reason"], at_stripe["id"]) == (10000, "requested_by_customer",
                                                                           refund.stripe_refund_id)
    assert_opaque_metadata(at_stripe, refund)
    [decided] = audits(db, appointment.id, "refund.policy_applied")
    assert (decided.details["rule"], decided.details["refund_cents"]) == ("late_fee", 10000)
    [created] = audits(db, appointment.id, "refund.created")
    assert created.stripe_object_id == refund.stripe_refund_id and created.reason == refund.clinical_reason

    # The patient's receipt: paid $125.00, refunded $100.00, net $25.00.
    html = client.get(f"/appointments/{appointment.id}/receipt").get_data(as_text=True)
    assert 'data-field="paid">$125.00' in html and 'data-field="net"><strong>$25.00' in html
    assert 'data-field="refunded">$100.00' in html


def test_canceling_an_unpaid_hold_refunds_nothing_and_cancels_the_intent(db, client, forms, book, queue,
                                                                         stripe_admin):
    appointment, attempt = book(pay=False, cancellation_window_hours=1)
    cancel_as_patient(client, forms, appointment)
    run_refund_jobs(queue)

    db.expire_all()
    assert db.get(PaymentAttempt, attempt.id).status == "canceled"
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "canceled"
    assert refunds_of(db, charge_of(db, appointment.id).id) == []
    assert audits(db, appointment.id, "refund.policy_applied") == []
    assert db.get(Appointment, appointment.id).status == "canceled"
