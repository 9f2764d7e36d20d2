"""On a phone: a declined payment puts an SMS with a one-click link in the outbox; a
link preview fetching it uses nothing; the patient's tap opens checkout; 4242 books;
the used link then explains itself and offers slots."""
import pytest
from playwright.sync_api import expect
from rq import SimpleWorker

from app.jobs import get_queue, redis_connection, set_app
from tests.e2e.test_checkout import fill_card, sandbox, to_checkout  # noqa: F401

pytestmark = pytest.mark.e2e


def run_jobs(app):
    set_app(app)
    SimpleWorker([get_queue("default", app)], connection=redis_connection(app)).work(burst=True)


def test_declined_payment_sms_link_books_on_a_phone(live_server, browser, phone, factories, db, clock, app,
                                                    sandbox):  # noqa: F811
    from datetime import datetime, timezone

    from app.models import Appointment, Notification, User

    queue = get_queue("default", app)
    queue.empty()
    page = phone
    appointment = to_checkout(page, live_server, factories, db)
    user = db.get(User, appointment.patient.user_id)
    user.phone_verified_at = datetime.now(timezone.utc)          # reminders and links may go by SMS
    db.commit()
    fill_card(page, "4000000000009995")
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_text("Your card has insufficient funds.")).to_be_visible()
    run_jobs(app)                                                  # the worker sends the message

    page.goto(f"{live_server}/dev/outbox")
    sms = page.locator('.outbox-message[data-template="payment_declined"]')
    expect(sms).to_have_count(1)
    assert sms.get_attribute("data-channel") == "sms"
    link = sms.locator("a").first.get_attribute("href")
    path = link[link.index("/r/"):]

    preview = page.request.get(live_server + path)                 # what an SMS app's preview does
    assert preview.status == 200

    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        tap = context.new_page()                                   # the patient's messages app, not signed in
        tap.goto(live_server + path)
        tap.get_by_role("button", name="Book this time and pay").click()
        expect(tap.get_by_role("heading", name="Pay to book")).to_be_visible()
        fill_card(tap, "4242424242424242")
        tap.get_by_role("button", name="Pay").click()
        expect(tap.get_by_role("heading", name="You're booked")).to_be_visible()
        assert tap.evaluate("document.documentElement.scrollWidth") <= 360
        db.expire_all()
        assert db.get(Appointment, appointment.id).status == "confirmed"

        tap.goto(live_server + path)                               # the same link again
        expect(tap.get_by_role("heading", name="This link has already been used.")).to_be_visible()
        expect(tap.get_by_text("These times are still free")).to_be_visible()
    finally:
        context.close()
    assert db.query(Notification).filter_by(template="payment_declined").count() == 1
