"""The payment-to-booking audit trail: every step, with patient, appointment, attempt and Stripe ids."""
from app.jobs.booking import expire_hold
from app.jobs.payments import cancel_for_released_hold
from tests.helpers.payments import PaymentAttempt, audit_rows, fresh, settle, start, timedelta


def _check_payment_rows(db, held, attempt, actions):
    for action in actions:
        rows = audit_rows(db, held.id, action)
        assert rows, f"no {action} audit row"
        for row in rows:
            assert row.patient_id == held.patient_id, action
            assert row.appointment_id == held.id, action
            assert row.payment_attempt_id == attempt.id, action
            assert row.stripe_object_id == attempt.stripe_payment_intent_id, action


def _check_booking_rows(db, held, actions):
    for action in actions:
        [row] = audit_rows(db, held.id, action)
        assert row.patient_id == held.patient_id and row.appointment_id == held.id, action


def test_a_declined_then_3ds_then_paid_booking_is_audited(app, db, held, clock, browser_pay):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000000002")
    settle(db, attempt)
    browser_pay.pay(attempt, "4000002500003155")
    settle(db, attempt)
    browser_pay.authenticate(attempt)
    assert settle(db, attempt).state == "confirmed"
    attempt = fresh(db, PaymentAttempt, attempt.id)
    _check_payment_rows(db, held, attempt, ("payment.attempted", "payment.declined", "payment.requires_action",
                                            "payment.succeeded", "payment.captured"))
    _check_booking_rows(db, held, ("slot.selected", "booking.confirmed"))
    actions = [r.action for r in audit_rows(db, held.id) if r.action.startswith(("payment.", "booking.",
                                                                                  "slot."))]
    assert actions == ["slot.selected", "payment.attempted", "payment.declined", "payment.requires_action",
                       "payment.succeeded", "booking.confirmed", "payment.captured"]
    [declined] = audit_rows(db, held.id, "payment.declined")
    assert declined.outcome == "failure" and declined.details["decline_code"] == "generic_decline"
    assert "4000" not in str(declined.details) and "0002" not in str(declined.details)   # never card data


def test_a_released_hold_and_its_canceled_payment_are_audited(app, db, held, clock, browser_pay, queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000009995")
    settle(db, attempt)
    clock.advance(timedelta(minutes=11))
    assert expire_hold(held.id)
    assert cancel_for_released_hold(held.id) == 1
    attempt = fresh(db, PaymentAttempt, attempt.id)
    _check_payment_rows(db, held, attempt, ("payment.attempted", "payment.declined", "payment.canceled"))
    _check_booking_rows(db, held, ("slot.selected", "booking.released"))
    [released] = audit_rows(db, held.id, "booking.released")
    assert released.reason == "hold expired"
