"""The payment spine: one settle routine, whatever interrupted the last one.

- Stripe captured but the process died before our rows said so: the next settle records the
  capture once (money on the rows, one ``payment.captured``), and a later refund gives it back.
- The job that should release a lost slot's authorization never ran (Redis lost it): the sweep
  releases it through the same routine.
- The layers: no service imports a job, no view imports an integration.
"""
import re
from datetime import timedelta
from pathlib import Path

from app.jobs.payments import sweep_payments
from app.models import Appointment, Charge, PaymentAttempt
from app.services import booking
from app.services.audit import Actor
from app.services.gateway import gateway
from tests.helpers.payments import MON_10_NY, SUCCESS, assert_captured_once, count_action, fresh, settle, start

APP = Path(__file__).resolve().parents[2] / "app"


def test_a_capture_stripe_made_before_a_crash_is_recorded_once_with_its_money(
        app, db, held, clock, browser_pay, queue, factories, stripe_admin):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    # The first settle authorized and confirmed, then the process died right after Stripe captured:
    # the capture call went out with the attempt's key, our rows never heard of it.
    from app.services import settlement

    db.rollback()
    locked = settlement._locked(db, attempt.id)
    settlement._apply(db, gateway(), locked, now=clock.now(), actor=Actor.system("test"),
                      timings=settlement.timings(), source="browser", cancel_requested=False)
    db.commit()
    assert fresh(db, Appointment, held.id).status == "confirmed"
    gateway().capture(attempt.stripe_payment_intent_id, key=fresh(db, PaymentAttempt, attempt.id).key("capture"))
    assert fresh(db, PaymentAttempt, attempt.id).status == "requires_capture"

    # Whatever comes next (the sweep, a webhook, the poll) runs the same routine.
    assert sweep_payments()["captures"] == 1
    attempt = assert_captured_once(db, stripe_admin, attempt.id)
    charge = db.get(Charge, attempt.charge_id)
    assert (charge.status, charge.amount_captured_cents) == ("captured", 12500)
    assert attempt.card_last4 == "4242"
    assert settle(db, attempt, source="webhook").state == "confirmed"
    assert count_action(db, held.id, "payment.captured") == 1

    # The clinic cancels: the whole deposit comes back, not $0.
    from app.jobs.refunds import refund_canceled_booking

    appointment = fresh(db, Appointment, held.id)
    staff = factories.user("admin")
    booking.cancel(db, appointment, actor=Actor("user", staff.id, "admin"), now=clock.now(),
                   reason="provider unavailable", by_user_id=staff.id)
    db.commit()
    [refund_id] = refund_canceled_booking(held.id)
    assert fresh(db, Charge, charge.id).amount_refunded_cents == 12500


def test_the_sweep_releases_an_authorization_whose_cancel_job_was_lost(app, db, held, clock, browser_pay,
                                                                       stripe_admin, factories, policy, queue):
    attempt = start(db, held, clock)
    assert browser_pay.pay(attempt, SUCCESS).status == "requires_capture"
    clock.advance(timedelta(minutes=11))                 # the hold expired before any path settled
    other = factories.patient()
    booking.take_hold(db, now=clock.now(), patient=other, provider_id=held.provider_id, type_id=held.type_id,
                      starts_at=MON_10_NY, policy=policy, actor=Actor("user", other.user_id, "patient"))
    db.commit()
    assert fresh(db, Appointment, held.id).status == "released"
    queue.empty()                                        # Redis lost the release's cancel job

    result = sweep_payments()
    assert result["released"] == 1
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert attempt.status == "canceled" and attempt.amount_captured_cents == 0
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "canceled"
    assert count_action(db, held.id, "payment.captured") == 0
    assert sweep_payments()["released"] == 0             # nothing left to do


def _imports(folder: str, pattern: str) -> list[str]:
    found = []
    for path in (APP / folder).rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(rf"\s*(from|import)\s+{pattern}\b", line):
                found.append(f"{path.relative_to(APP.parent)}:{number}: {line.strip()}")
    return found


def test_services_never_import_jobs_and_views_never_import_integrations():
    assert _imports("services", r"app\.jobs") == []
    assert _imports("blueprints", r"app\.integrations") == []
    assert _imports("blueprints", r"app\.jobs") == []
