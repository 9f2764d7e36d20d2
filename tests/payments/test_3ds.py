"""3-D Secure: completed, failed then retried, declined after the challenge; the hold's one extension."""
from datetime import datetime, timezone

import pytest

from app.services import booking
from app.services.audit import Actor
from tests.helpers.payments import (SUCCESS, Appointment, PaymentAttempt, assert_captured_once, audit_rows,
                                    count_action, fresh, settle, start, timedelta)

UTC = timezone.utc
HOLD_START = datetime(2026, 12, 7, 13, 10, tzinfo=UTC)      # the fixture's hold: clock 13:00 + 10 min


@pytest.mark.parametrize("number", ["4000002500003155", "4000000000003220"])
def test_challenge_completed_confirms_and_captures_once(app, db, held, clock, browser_pay, stripe_admin, number):
    attempt = start(db, held, clock)
    intent = browser_pay.pay(attempt, number)
    assert intent.status == "requires_action"
    result = settle(db, attempt)
    assert result.state == "requires_action"
    appointment = fresh(db, Appointment, held.id)
    assert appointment.status == "held"
    assert appointment.hold_expires_at == HOLD_START + timedelta(minutes=5)     # HOLD_EXTENSION
    assert count_action(db, held.id, "payment.requires_action") == 1
    [extended] = audit_rows(db, held.id, "hold.extended")
    assert extended.details["to"] == (HOLD_START + timedelta(minutes=5)).isoformat()

    browser_pay.authenticate(attempt, success=True)
    assert settle(db, attempt).state == "confirmed"
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


@pytest.mark.parametrize("number", ["4000002500003155", "4000000000003220"])
def test_challenge_failed_books_nothing_and_a_retry_works(app, db, held, clock, browser_pay, stripe_admin,
                                                          number):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, number)
    assert settle(db, attempt).state == "requires_action"
    browser_pay.authenticate(attempt, success=False)
    result = settle(db, attempt)
    assert result.state == "declined"
    assert result.message == "Your bank could not confirm it was you. Try again or use another card."
    assert fresh(db, Appointment, held.id).status == "held"
    attempt = db.get(PaymentAttempt, attempt.id)
    assert [f.code for f in attempt.failures] == ["payment_intent_authentication_failure"]
    assert attempt.status == "requires_payment_method"

    # The challenge again on the same intent: no second extension.
    browser_pay.pay(attempt, number)
    assert settle(db, attempt).state == "requires_action"
    assert fresh(db, Appointment, held.id).hold_expires_at == HOLD_START + timedelta(minutes=5)
    assert count_action(db, held.id, "hold.extended") == 1
    assert count_action(db, held.id, "payment.requires_action") == 2
    browser_pay.authenticate(attempt, success=True)
    assert settle(db, attempt).state == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def test_3178_is_declined_after_the_challenge(app, db, held, clock, browser_pay, stripe_admin):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000008260003178")
    assert settle(db, attempt).state == "requires_action"
    browser_pay.authenticate(attempt, success=True)
    result = settle(db, attempt)
    assert result.state == "declined"
    assert result.message == "Your card has insufficient funds. Please try another card."
    assert fresh(db, Appointment, held.id).status == "held"
    attempt = db.get(PaymentAttempt, attempt.id)
    assert [f.decline_code for f in attempt.failures] == ["insufficient_funds"]
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).amount_received == 0
    browser_pay.pay(attempt, SUCCESS)
    assert settle(db, attempt).state == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def test_the_extension_never_runs_past_start_minus_release_before_start(app, db, factories, clock, policy,
                                                                        browser_pay):
    visit = factories.appointment_type(name="Quick video", min_notice_minutes=0)
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    clock.set(datetime(2026, 12, 7, 13, 43, tzinfo=UTC))
    starts = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)          # 09:00 New York
    held = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id, type_id=visit.id,
                             starts_at=starts, policy=policy, actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    assert held.hold_expires_at == datetime(2026, 12, 7, 13, 53, tzinfo=UTC)
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000002760003184")
    assert settle(db, attempt).state == "requires_action"
    # 13:53 + 5 min would be 13:58; the limit is 14:00 - 5 min.
    assert fresh(db, Appointment, held.id).hold_expires_at == datetime(2026, 12, 7, 13, 55, tzinfo=UTC)
    [extended] = audit_rows(db, held.id, "hold.extended")
    assert extended.details["to"] == "2026-12-07T13:55:00+00:00"
