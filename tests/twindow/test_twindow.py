"""T-window: a payment failing shortly before the visit alerts the provider at once and
releases the slot at the deadline unless it is recovered first. Timings in seconds."""
from datetime import timedelta

from app.jobs.booking import expire_hold, sweep_expired_holds
from app.jobs.notifications import send_notification
from app.jobs.twindow import sweep_alerts
from app.models import Appointment, PaymentAttempt
from app.services import booking
from tests.helpers.payments import MON_10_NY, SUCCESS, audit_rows, count_action, fresh, settle, start
from tests.helpers.twindow import RELEASE_BEFORE_START, alert_of, messages_to, run_twindow_jobs
from tests.helpers.web import login

DECLINE = "4000000000000002"
DEADLINE = MON_10_NY - RELEASE_BEFORE_START


def decline(db, appointment, clock, browser_pay):
    attempt = start(db, appointment, clock)
    browser_pay.pay(attempt, DECLINE)
    assert settle(db, attempt).state == "declined"
    return attempt


def sent_text(db, notification) -> str:
    assert send_notification(notification.id) in ("sent", "delivered")
    return fresh(db, type(notification), notification.id).body


def day_view(client, provider_user) -> str:
    """The provider's own day view (signing in the first time)."""
    page = client.get("/staff/day")
    if page.status_code == 302:
        assert login(client, provider_user.email).status_code == 303
        page = client.get("/staff/day")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_decline_inside_the_window_alerts_at_once_and_releases_at_the_deadline(
        app, db, client, imminent, clock, browser_pay, queue):
    provider_user = imminent.provider.user
    patient_user = imminent.patient.user
    clock.advance(timedelta(seconds=5))                       # 55 s before the start
    attempt = decline(db, imminent, clock, browser_pay)
    assert run_twindow_jobs(queue) == [True]

    alert = alert_of(db, imminent.id)
    assert alert.status == "open" and alert.provider_id == imminent.provider_id
    assert alert.release_deadline == DEADLINE and alert.raised_at == clock.now()
    appointment = fresh(db, Appointment, imminent.id)
    assert appointment.status == "held" and appointment.hold_expires_at == DEADLINE   # was start - 30 s
    assert count_action(db, imminent.id, "provider_alert.raised") == 1
    [extended] = audit_rows(db, imminent.id, "hold.extended")
    assert extended.details["to"] == DEADLINE.isoformat()

    # The provider is told at once, with the minimum necessary.
    [message] = messages_to(db, provider_user.id)
    assert message.template == "provider_payment_alert" and message.scheduled_for == clock.now()
    text = sent_text(db, message)
    assert "payment not yet received for your" in text.lower()
    assert "10:00 AM" in text and "/staff/day?date=2026-12-07" in text
    for secret in ("Pat Ghostly", patient_user.email, "Video consult", "Dr Quinn"):
        assert secret not in text
    assert 'data-alert="open"' in day_view(client, provider_user)

    # A second decline on the same appointment does not raise a second alert.
    attempt = fresh(db, PaymentAttempt, attempt.id)
    browser_pay.pay(attempt, "4000000000009995")
    assert settle(db, attempt).state == "declined"
    assert run_twindow_jobs(queue) == [False]
    assert len(messages_to(db, provider_user.id)) == 1

    # The old expiry (start - 30 s) passes: the slot is still held until the deadline.
    clock.set(MON_10_NY - timedelta(seconds=25))
    assert expire_hold(imminent.id) is False
    assert fresh(db, Appointment, imminent.id).status == "held"

    # The deadline passes: the sweeper releases the slot; the alert says so; everyone is told.
    clock.set(DEADLINE + timedelta(seconds=1))
    assert sweep_expired_holds() == 1
    assert fresh(db, Appointment, imminent.id).status == "released"
    assert run_twindow_jobs(queue) == ["released"]
    alert = alert_of(db, imminent.id)
    assert alert.status == "released" and alert.resolved_at == clock.now()
    assert count_action(db, imminent.id, "provider_alert.released") == 1
    released = [m for m in messages_to(db, provider_user.id) if m.template == "slot_released_provider"]
    assert len(released) == 1
    text = sent_text(db, released[0])
    assert "released" in text and "Pat Ghostly" not in text
    [told] = [m for m in messages_to(db, patient_user.id) if m.template == "slot_released_patient"]
    assert "released" in sent_text(db, told)

    page = day_view(client, provider_user)
    assert 'data-alert="released"' in page and 'data-alert="open"' not in page
    # Nothing more happens on a repeat (a duplicate job, the sweeper).
    assert sweep_alerts() == {"alerts_raised": 0, "alerts_settled": 0}
    assert count_action(db, imminent.id, "provider_alert.released") == 1


def test_recovery_before_the_deadline_confirms_and_clears_the_alert(
        app, db, client, imminent, clock, browser_pay, stripe_admin, queue):
    provider_user = imminent.provider.user
    attempt = decline(db, imminent, clock, browser_pay)
    run_twindow_jobs(queue)
    assert alert_of(db, imminent.id).status == "open"

    clock.set(MON_10_NY - timedelta(seconds=25))              # after the old expiry, before the deadline
    assert browser_pay.pay(attempt, SUCCESS).status == "requires_capture"
    assert settle(db, attempt).state == "confirmed"
    assert fresh(db, Appointment, imminent.id).status == "confirmed"
    assert fresh(db, PaymentAttempt, attempt.id).status == "succeeded"
    assert run_twindow_jobs(queue) == ["recovered"]

    alert = alert_of(db, imminent.id)
    assert alert.status == "recovered" and alert.resolved_at == clock.now()
    assert count_action(db, imminent.id, "provider_alert.recovered") == 1
    templates = [m.template for m in messages_to(db, provider_user.id)]
    assert templates == ["provider_payment_alert", "provider_payment_recovered"]
    assert "back on" in sent_text(db, messages_to(db, provider_user.id)[1])

    # The deadline passes: nothing is released.
    clock.set(DEADLINE + timedelta(seconds=1))
    assert expire_hold(imminent.id) is False and sweep_expired_holds() == 0
    assert fresh(db, Appointment, imminent.id).status == "confirmed"
    assert run_twindow_jobs(queue) == []
    assert alert_of(db, imminent.id).status == "recovered"
    page = day_view(client, provider_user)
    assert 'data-alert="recovered"' in page and 'data-alert="open"' not in page


def test_decline_outside_the_window_raises_no_alert(app, db, client, distant, clock, browser_pay, queue):
    provider_user = distant.provider.user
    expiry = distant.hold_expires_at
    decline(db, distant, clock, browser_pay)
    assert run_twindow_jobs(queue) == [False]

    assert alert_of(db, distant.id) is None
    assert messages_to(db, provider_user.id) == []
    assert fresh(db, Appointment, distant.id).hold_expires_at == expiry
    assert [r.action for r in audit_rows(db, distant.id) if r.action.startswith("provider_alert.")] == []
    # It expires as any hold does, with no provider message.
    clock.advance(timedelta(seconds=31))
    assert expire_hold(distant.id) is True
    assert run_twindow_jobs(queue) == [None]
    assert messages_to(db, provider_user.id) == []
    assert 'data-alert=' not in day_view(client, provider_user)


def test_the_sweeper_raises_an_alert_whose_job_was_lost(app, db, imminent, clock, browser_pay, queue):
    decline(db, imminent, clock, browser_pay)
    queue.empty()                                            # Redis lost the listener's job
    assert alert_of(db, imminent.id) is None
    assert sweep_alerts() == {"alerts_raised": 1, "alerts_settled": 0}
    assert alert_of(db, imminent.id).status == "open"
    assert [m.template for m in messages_to(db, imminent.provider.user_id)] == ["provider_payment_alert"]
    # A cancellation by the clinic with the confirmation job lost: the sweeper releases the alert.
    from app.services.audit import Actor

    appointment = fresh(db, Appointment, imminent.id)
    booking.cancel(db, appointment, actor=Actor.system("test"), now=clock.now(), reason="patient called",
                   by_user_id=None)
    db.commit()
    queue.empty()
    assert sweep_alerts() == {"alerts_raised": 0, "alerts_settled": 1}
    assert alert_of(db, imminent.id).status == "released"
