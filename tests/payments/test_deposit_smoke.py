"""The reference path through the sandbox, at the service level."""
from app.services.settlement import settle
from app.models import Appointment, PaymentAttempt
from app.services import audit, payments
from app.services.audit import Actor


def start(db, app, held, clock):
    from app.services.gateway import gateway
    from app.services.settlement import timings

    attempt = payments.open_attempt(db, appointment=held, patient=held.patient, now=clock.now())
    db.commit()
    payments.create_intent(db, gateway(), attempt, patient=held.patient, appointment=held,
                           actor=Actor.system("test"), now=clock.now(), timings=timings())
    db.commit()
    return attempt


def test_4242_confirms_and_captures_once(app, db, held, clock, browser_pay, sandbox):
    attempt = start(db, app, held, clock)
    intent = browser_pay.pay(attempt, "4242424242424242")
    assert intent.status == "requires_capture"
    result = settle(db, attempt.id, source="browser", actor=Actor.system("test"))
    assert result.state == "confirmed"
    db.expire_all()
    appointment = db.get(Appointment, held.id)
    attempt = db.get(PaymentAttempt, attempt.id)
    assert appointment.status == "confirmed" and appointment.telehealth_room
    assert attempt.status == "succeeded" and attempt.amount_captured_cents == 12500
    again = settle(db, attempt.id, source="webhook", actor=Actor.system("test"))
    assert again.state == "confirmed"
    actions = audit.actions_for(db, appointment_id=held.id)
    assert actions.count("payment.captured") == 1
    assert "booking.confirmed" in actions and "payment.attempted" in actions


def test_decline_then_retry_on_the_same_intent(app, db, held, clock, browser_pay):
    attempt = start(db, app, held, clock)
    browser_pay.pay(attempt, "4000000000009995")
    result = settle(db, attempt.id, source="browser", actor=Actor.system("test"))
    assert result.state == "declined"
    assert result.message == "Your card has insufficient funds. Please try another card."
    db.expire_all()
    assert db.get(Appointment, held.id).status == "held"
    browser_pay.pay(attempt, "4242424242424242")
    assert settle(db, attempt.id, source="browser", actor=Actor.system("test")).state == "confirmed"
    db.expire_all()
    attempt = db.get(PaymentAttempt, attempt.id)
    assert [f.decline_code for f in attempt.failures] == ["insufficient_funds"]
