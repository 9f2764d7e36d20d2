"""Every decline card: no booking, the right words, a retry on the same intent, and giving up."""
import pytest

from app.jobs.booking import expire_hold
from app.jobs.payments import cancel_for_released_hold
from app.models import Charge
from app.services import booking, payments
from app.services.audit import Actor
from tests.helpers.payments import (MON_10_NY, SUCCESS, Appointment, PaymentAttempt, assert_captured_once,
                                    count_action, fresh, settle, start, timedelta)

GENERIC = "Your card was declined. Please try another card or payment method."
DECLINES = [
    ("4000000000000002", "card_declined", "generic_decline", GENERIC),
    ("4000000000009995", "card_declined", "insufficient_funds",
     "Your card has insufficient funds. Please try another card."),
    ("4000000000009987", "card_declined", "lost_card", GENERIC),
    ("4000000000009979", "card_declined", "stolen_card", GENERIC),
    ("4000000000000069", "expired_card", None, "Your card has expired. Please use another card."),
    ("4000000000000127", "incorrect_cvc", None, "The security code (CVC) is incorrect. Check it and try again."),
    ("4000000000000119", "processing_error", None, "We could not process your card just now. Please try again."),
    ("4000000000006975", "card_declined", "card_velocity_exceeded",
     "Your card has been used too many times recently. Please try another card."),
]


@pytest.mark.parametrize("number,code,decline_code,message", DECLINES, ids=[d[0][-4:] for d in DECLINES])
def test_decline_books_nothing_then_a_retry_on_the_same_intent_captures_once(
        app, db, held, clock, browser_pay, stripe_admin, number, code, decline_code, message):
    attempt = start(db, held, clock)
    intent_id = attempt.stripe_payment_intent_id
    error = browser_pay.pay(attempt, number)
    assert error.http_status == 402

    result = settle(db, attempt)
    assert result.state == "declined"
    assert result.message == message
    for word in ("lost", "stolen"):
        assert word not in result.message.lower()
    appointment = fresh(db, Appointment, held.id)
    assert appointment.status == "held" and appointment.telehealth_room is None
    attempt = db.get(PaymentAttempt, attempt.id)
    assert attempt.status == "requires_payment_method"
    assert [(f.code, f.decline_code) for f in attempt.failures] == [(code, decline_code)]
    assert stripe_admin.intent(intent_id).amount_received == 0
    assert count_action(db, held.id, "payment.declined") == 1
    # The same decline read again (webhook, poll) is not a second failure.
    assert settle(db, attempt, source="poll").state == "declined"
    assert len(fresh(db, PaymentAttempt, attempt.id).failures) == 1

    retry = browser_pay.pay(attempt, SUCCESS)
    assert retry.id == intent_id and retry.status == "requires_capture"
    assert settle(db, attempt).state == "confirmed"
    assert fresh(db, Appointment, held.id).status == "confirmed"
    attempt = assert_captured_once(db, stripe_admin, attempt.id)
    assert attempt.number == 1 and attempt.stripe_payment_intent_id == intent_id
    assert db.get(Charge, attempt.charge_id).status == "captured"


def test_a_patient_who_gives_up_leaves_the_slot_bookable_and_the_intent_canceled(
        app, db, held, clock, browser_pay, stripe_admin, factories, policy, queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000000002")
    assert settle(db, attempt).state == "declined"

    clock.advance(timedelta(minutes=9))
    assert expire_hold(held.id) is False                     # not yet: the hold still has a minute
    assert fresh(db, Appointment, held.id).status == "held"
    clock.advance(timedelta(minutes=2))
    assert expire_hold(held.id) is True
    assert fresh(db, Appointment, held.id).status == "released"
    assert count_action(db, held.id, "booking.released") == 1

    # The release queued the cancel job; run it as the worker would.
    assert "app.jobs.payments.cancel_for_released_hold" in [job.func_name for job in queue.get_jobs()]
    assert cancel_for_released_hold(held.id) == 1
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert attempt.status == "canceled"
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert intent.status == "canceled" and intent.amount_received == 0
    assert count_action(db, held.id, "payment.canceled") == 1
    assert cancel_for_released_hold(held.id) == 0             # safe to run twice

    other = factories.patient()
    taken = booking.take_hold(db, now=clock.now(), patient=other, provider_id=held.provider_id,
                              type_id=held.type_id, starts_at=MON_10_NY, policy=policy,
                              actor=Actor("user", other.user_id, "patient"))
    db.commit()
    assert taken.status == "held" and taken.id != held.id


def test_checkout_after_the_hold_expired_says_so(app, db, held, clock):
    clock.advance(timedelta(minutes=11))
    with pytest.raises(payments.PaymentRuleError, match="hold on this time has ended"):
        payments.open_attempt(db, appointment=held, patient=held.patient, now=clock.now())
