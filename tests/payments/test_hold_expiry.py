"""The hold expires while the patient pays: a late success takes the slot again, or gives the money back."""
from app.jobs.booking import expire_hold
from app.jobs.payments import cancel_for_released_hold, cancel_payment
from app.services import booking
from app.services.audit import Actor
from tests.helpers.payments import (MON_10_NY, SUCCESS, Appointment, PaymentAttempt, assert_captured_once, audit_rows,
                                    count_action, fresh, settle, start, timedelta)


def test_late_success_with_the_slot_still_free_confirms_it(app, db, held, clock, browser_pay, stripe_admin,
                                                           queue):
    attempt = start(db, held, clock)
    assert browser_pay.pay(attempt, SUCCESS).status == "requires_capture"
    clock.advance(timedelta(minutes=11))
    assert expire_hold(held.id) is True
    assert fresh(db, Appointment, held.id).status == "released"

    result = settle(db, attempt, source="webhook")
    assert result.state == "confirmed"
    appointment = fresh(db, Appointment, held.id)
    assert appointment.status == "confirmed" and appointment.telehealth_room
    [confirmed] = audit_rows(db, held.id, "booking.confirmed")
    assert confirmed.details["from"] == "released"
    assert_captured_once(db, stripe_admin, attempt.id)
    # The cancel job queued by the release finds the work done and leaves the payment alone.
    assert cancel_for_released_hold(held.id) == 0
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "succeeded"


def test_cancel_job_first_applies_a_late_success_instead_of_canceling_it(app, db, held, clock, browser_pay,
                                                                         stripe_admin, queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    clock.advance(timedelta(minutes=11))
    assert expire_hold(held.id) is True
    assert cancel_payment(attempt.id, "hold released") is False
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def test_late_success_after_another_patient_took_the_slot_cancels_the_authorization(
        app, db, held, clock, browser_pay, stripe_admin, factories, policy, queue):
    attempt = start(db, held, clock)
    assert browser_pay.pay(attempt, SUCCESS).status == "requires_capture"
    clock.advance(timedelta(minutes=11))
    other = factories.patient()
    theirs = booking.take_hold(db, now=clock.now(), patient=other, provider_id=held.provider_id,
                               type_id=held.type_id, starts_at=MON_10_NY, policy=policy,
                               actor=Actor("user", other.user_id, "patient"))
    db.commit()                                          # taking it released the expired hold in its way
    assert fresh(db, Appointment, held.id).status == "released"

    result = settle(db, attempt, source="browser")
    assert result.state == "slot_lost"
    assert "not been charged" in result.message
    assert result.nearest, "the patient is offered other times"
    assert all(slot.starts_at != MON_10_NY for slot in result.nearest)
    assert fresh(db, Appointment, held.id).status == "released"
    assert db.get(Appointment, theirs.id).status == "held"

    # The same settle releases the authorization once the slot_lost state committed; never captured.
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert attempt.status == "canceled" and attempt.amount_captured_cents == 0
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert intent.status == "canceled" and intent.amount_received == 0
    assert count_action(db, held.id, "payment.captured") == 0
    assert count_action(db, held.id, "payment.canceled") == 1
    # A late webhook, poll or cancel job changes nothing.
    assert cancel_payment(attempt.id, "slot no longer held") is False
    assert settle(db, attempt, source="poll").state == "slot_lost"
    assert fresh(db, PaymentAttempt, attempt.id).status == "canceled"


def test_the_page_of_a_lost_slot_says_so_and_offers_the_nearest_times(app, db, held, clock, browser_pay, policy,
                                                                      factories):
    """Hold expired mid-payment, someone else booked the slot: the patient is told, uncharged, with times."""
    from tests.helpers.web import login

    attempt = start(db, held, clock)
    clock.advance(policy.ttl + timedelta(seconds=1))
    expire_hold(held.id)
    rival = factories.patient()
    booking.take_hold(db, now=clock.now(), patient=rival, provider_id=held.provider_id,
                              type_id=held.type_id, starts_at=held.starts_at, policy=policy,
                              actor=Actor.system("test"))
    db.commit()
    browser_pay.pay(attempt, "4242424242424242")
    assert settle(db, attempt).state == "slot_lost"
    client = app.test_client()
    user = held.patient.user
    assert login(client, user.email).status_code == 303
    page = client.get(f"/checkout/{held.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 409
    assert "Someone else booked this time" in html and "You have not been charged" in html
    assert "Nearest free times" in html and html.count('class="button"') >= 2
