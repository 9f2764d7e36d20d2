"""Messages that bring a patient back: a declined payment and a released hold send a
one-click link; opening it (as a link preview does) uses nothing; the tap takes the
slot and opens that one checkout — not a sign-in to the portal. A decline message
waits DECLINE_MESSAGE_GRACE and is never sent if the patient paid meanwhile; once the
appointment is booked its links are void and say "You're booked"."""
import re
from datetime import timedelta

from rq import SimpleWorker
from sqlalchemy import select

from app.jobs import redis_connection
from app.jobs.booking import expire_hold
from app.jobs.notifications import sweep_notifications
from app.models import Appointment, AuditEvent, LinkToken, Notification
from app.services import booking
from app.services.audit import Actor
from tests.helpers.payments import SUCCESS, PaymentAttempt, fresh, settle, start

LINK = re.compile(r"https?://[^\s]+/r/([A-Za-z0-9_.\-]+)")


def run_jobs(app, queue):
    SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)


def messages(db, appointment_id, template=None):
    db.expire_all()
    query = select(Notification).where(Notification.appointment_id == appointment_id)
    if template:
        query = query.where(Notification.template == template)
    return list(db.scalars(query.order_by(Notification.id)))


def path_of(link_url: str) -> str:
    return "/r/" + LINK.search(link_url).group(1)


def after_the_grace(app, queue, clock):
    """The decline message's grace passes; the sweeper hands what is due to the worker."""
    clock.advance(app.config["SETTINGS"].DECLINE_MESSAGE_GRACE + timedelta(seconds=1))
    sweep_notifications()
    run_jobs(app, queue)


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def attempts_of(db, appointment_id) -> int:
    from app.models import Charge

    db.expire_all()
    return len(db.scalars(select(PaymentAttempt.id).join(Charge).where(Charge.appointment_id == appointment_id))
               .all())


def test_decline_sends_a_link_that_previews_safely_and_books(app, db, held, clock, browser_pay, queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000009995")
    assert settle(db, attempt).state == "declined"
    run_jobs(app, queue)
    [waiting] = messages(db, held.id, "payment_declined")
    assert waiting.status == "queued" and waiting.body is None        # the grace: not sent yet
    after_the_grace(app, queue, clock)
    [sent] = messages(db, held.id, "payment_declined")
    assert sent.status == "delivered" and sent.provider == "outbox"
    assert sent.channel == "email"             # the number is not verified: never SMS
    user = held.patient.user
    assert user.full_name not in sent.body and held.provider.display_name not in sent.body
    assert "did not go through" in sent.body
    link = path_of(sent.body)

    visitor = app.test_client()               # the patient's phone: not signed in
    for _ in range(2):                        # a link preview, then the patient: nothing used up
        page = visitor.get(link)
        assert page.status_code == 200 and "Finish booking" in page.get_data(as_text=True)
    assert db.scalar(select(LinkToken.used_at)) is None

    html = visitor.get(link).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    tapped = visitor.post(link, data={"csrf_token": token})
    assert tapped.status_code == 303 and tapped.headers["Location"] == f"/checkout/{held.id}"
    assert visitor.get(f"/checkout/{held.id}").status_code == 200     # that one checkout
    assert visitor.get("/patient").status_code == 302                 # not a sign-in
    again = visitor.post(link, data={"csrf_token": token})
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)

    browser_pay.pay(fresh(db, PaymentAttempt, attempt.id), SUCCESS)
    done = visitor.post(f"/checkout/{held.id}/complete", headers={"X-CSRFToken": token})
    assert done.get_json()["state"] == "confirmed"
    assert fresh(db, Appointment, held.id).status == "confirmed"


def test_released_hold_sends_a_link_that_takes_the_slot_again(app, db, held, clock, browser_pay, queue, policy):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000000002")
    settle(db, attempt)
    clock.advance(policy.ttl + timedelta(seconds=1))
    assert expire_hold(held.id) is True
    run_jobs(app, queue)
    [sent] = messages(db, held.id, "hold_released")
    assert fresh(db, PaymentAttempt, attempt.id).status == "canceled"      # its intent canceled too
    visitor = app.test_client()
    link = path_of(sent.body)
    html = visitor.get(link).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    tapped = visitor.post(link, data={"csrf_token": token})
    assert tapped.status_code == 303
    new_id = int(tapped.headers["Location"].rsplit("/", 1)[1])
    fresh_hold = fresh(db, Appointment, new_id)
    assert new_id != held.id and fresh_hold.status == "held"
    assert fresh_hold.starts_at == held.starts_at and fresh_hold.patient_id == held.patient_id

    again = start(db, fresh_hold, clock)                    # the patient pays on the page the tap opened
    browser_pay.pay(again, SUCCESS)
    assert settle(db, again).state == "confirmed"
    reopened = visitor.get(link).get_data(as_text=True)
    assert "You're booked" in reopened and f'href="/appointments/{new_id}"' in reopened
    assert "These times are still free" not in reopened


def test_expired_or_forged_links_explain_themselves_and_offer_slots(app, db, held, clock, browser_pay, queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000000002")
    settle(db, attempt)
    run_jobs(app, queue)
    after_the_grace(app, queue, clock)
    [sent] = messages(db, held.id, "payment_declined")
    link = path_of(sent.body)
    clock.advance(app.config["SETTINGS"].RETRY_LINK_TTL + timedelta(seconds=1))
    visitor = app.test_client()
    expired = visitor.get(link)
    body = expired.get_data(as_text=True)
    assert expired.status_code == 410 and "This link has expired." in body
    assert "These times are still free" in body
    forged = visitor.get(link[:-3] + "xyz")
    assert forged.status_code == 404 and "not valid" in forged.get_data(as_text=True)


def test_confirmation_and_reminders_then_a_cancel_cancels_them(app, db, held, clock, browser_pay, queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert settle(db, attempt).state == "confirmed"
    run_jobs(app, queue)
    [confirmation] = messages(db, held.id, "booking_confirmed")
    assert confirmation.status == "delivered" and confirmation.channel == "email"
    reminders = messages(db, held.id, "reminder")
    # Booked Monday 08:00 for 10:00: the 24-hour reminder is already past, the 1-hour one is due at 09:00.
    assert [r.scheduled_for for r in reminders] == [held.starts_at - timedelta(hours=1)]
    assert reminders[0].status == "queued"
    appointment = fresh(db, Appointment, held.id)
    booking.cancel(db, appointment, actor=Actor("user", appointment.patient.user_id, "patient"), now=clock.now(),
                   reason="feeling better", by_user_id=appointment.patient.user_id)
    db.commit()
    run_jobs(app, queue)
    assert messages(db, held.id, "reminder")[0].status == "canceled"
    [notice] = messages(db, held.id, "booking_canceled")
    assert notice.status == "delivered" and "canceled by you" in notice.body


def test_a_links_checkout_offers_the_patients_saved_card(app, db, held, clock, browser_pay, queue, policy):
    from app.services.gateway import gateway
    from app.services import payments

    first = start(db, held, clock)
    payments.set_save_card(db, gateway(), first, True)            # "save this card" on the first visit
    db.commit()
    browser_pay.pay(first, SUCCESS)
    assert settle(db, first).state == "confirmed"
    patient = held.patient
    second = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=held.provider_id,
                               type_id=held.type_id, starts_at=held.starts_at + timedelta(hours=2), policy=policy,
                               actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    attempt = start(db, second, clock)
    browser_pay.pay(attempt, "4000000000000002")
    settle(db, attempt)
    run_jobs(app, queue)
    after_the_grace(app, queue, clock)
    [sent] = messages(db, second.id, "payment_declined")
    visitor = app.test_client()
    link = path_of(sent.body)
    html = visitor.get(link).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert visitor.post(link, data={"csrf_token": token}).status_code == 303
    page = visitor.get(f"/checkout/{second.id}").get_data(as_text=True)
    assert "4242" in page and "Pay with" in page                # pre-selected: one tap away


def test_staff_see_an_appointments_message_log(app, db, held, clock, browser_pay, queue, factories):
    from tests.helpers.web import login

    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000000002")
    settle(db, attempt)
    run_jobs(app, queue)
    after_the_grace(app, queue, clock)
    staff = app.test_client()
    billing = factories.user("billing")
    assert login(staff, billing.email).status_code == 303
    page = staff.get(f"/staff/appointments/{held.id}/messages")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "payment declined" in html and "EMAIL" in html and held.patient.user.email in html
    assert "delivered" in html


def test_paying_with_another_card_within_the_grace_sends_no_decline_message(app, db, held, clock, browser_pay,
                                                                             queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000000002")
    assert settle(db, attempt).state == "declined"
    run_jobs(app, queue)
    [waiting] = messages(db, held.id, "payment_declined")
    assert waiting.status == "queued"
    link = path_of(waiting.context["link"])

    clock.advance(timedelta(seconds=30))                    # still on the page: another card
    sweep_notifications()
    run_jobs(app, queue)
    assert messages(db, held.id, "payment_declined")[0].status == "queued"      # nothing sent early
    browser_pay.pay(fresh(db, PaymentAttempt, attempt.id), SUCCESS)
    assert settle(db, attempt).state == "confirmed"
    run_jobs(app, queue)
    after_the_grace(app, queue, clock)

    [decline] = messages(db, held.id, "payment_declined")
    assert decline.status == "canceled" and decline.sent_at is None and decline.body is None
    assert decline.provider is None                          # never reached the outbox
    assert [m.status for m in messages(db, held.id, "booking_confirmed")] == ["delivered"]
    db.expire_all()
    assert db.scalars(select(LinkToken).where(LinkToken.appointment_id == held.id,
                                              LinkToken.used_at.is_(None))).all() == []     # no working link
    voided = db.scalars(select(AuditEvent).where(AuditEvent.action == "link.voided",
                                                 AuditEvent.appointment_id == held.id)).all()
    assert len(voided) == 1
    page = app.test_client().get(link).get_data(as_text=True)                # the link, had it gone out
    assert "You're booked" in page and "Finish booking" not in page


def test_a_sent_decline_link_says_booked_once_paid_and_its_tap_books_nothing(app, db, held, clock, browser_pay,
                                                                             queue):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000009995")
    assert settle(db, attempt).state == "declined"
    run_jobs(app, queue)
    after_the_grace(app, queue, clock)
    [sent] = messages(db, held.id, "payment_declined")
    assert sent.status == "delivered"
    link = path_of(sent.body)

    visitor = app.test_client()                              # the patient's phone, not signed in
    html = visitor.get(link).get_data(as_text=True)          # opened before paying: still the way back
    assert "Finish booking" in html
    token = csrf(html)

    browser_pay.pay(fresh(db, PaymentAttempt, attempt.id), SUCCESS)   # another card, on the checkout page
    assert settle(db, attempt).state == "confirmed"
    run_jobs(app, queue)
    appointments_before = db.scalars(select(Appointment.id).where(Appointment.patient_id == held.patient_id)).all()
    attempts_before = attempts_of(db, held.id)

    opened = visitor.get(link)
    body = opened.get_data(as_text=True)
    assert opened.status_code == 200
    assert "You're booked" in body and "Monday, December 7 at 10:00 AM" in body
    assert f'href="/appointments/{held.id}"' in body and f'href="/visits/{held.id}/join"' in body
    assert "Finish booking" not in body and "Book this time and pay" not in body
    assert "was just taken" not in body and "These times are still free" not in body
    assert held.patient.user.full_name not in body and held.provider.display_name not in body

    tapped = visitor.post(link, data={"csrf_token": token})  # the tap from the page opened earlier
    body = tapped.get_data(as_text=True)
    assert tapped.status_code == 200 and "You're booked" in body and "was just taken" not in body
    db.expire_all()
    assert db.scalars(select(Appointment.id).where(Appointment.patient_id == held.patient_id)).all() \
        == appointments_before                                # no hold taken
    assert attempts_of(db, held.id) == attempts_before        # no new checkout attempt
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert visitor.get(f"/checkout/{held.id}").status_code == 404     # and no checkout granted
