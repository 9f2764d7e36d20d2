"""On a phone: a declined payment puts an SMS with a one-click link in the outbox (after
DECLINE_MESSAGE_GRACE); a link preview fetching it uses nothing; the patient's tap opens
checkout; 4242 books; the link then says "You're booked". A patient who pays with
another card on the page within the grace gets no decline SMS, and the link it would
have carried says "You're booked" too."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect
from rq import SimpleWorker

from app.jobs import get_queue, redis_connection, set_app

pytestmark = pytest.mark.e2e

EXPIRY, CVC, ZIP = "12 / 34", "123", "10001"
URL = re.compile(r"https?://[^\s<]+")


@pytest.fixture
def jobs(app):
    """This run's queue, emptied; ``run()`` works it the way the worker does."""
    set_app(app)
    queue = get_queue("default", app)
    queue.empty()

    class Jobs:
        def run(self):
            SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)

        def after_the_grace(self, clock):
            """The decline message's grace passes; the sweeper hands what is due to the worker."""
            from app.jobs.notifications import sweep_notifications

            clock.advance(app.config["SETTINGS"].DECLINE_MESSAGE_GRACE + timedelta(seconds=1))
            sweep_notifications()
            self.run()

    yield Jobs()
    queue.empty()


def outbox(db, template):
    """What the outbox sender handed over (the /dev/outbox page exists only in development)."""
    from app.models import Notification

    db.expire_all()
    return (db.query(Notification).filter_by(provider="outbox", template=template)
            .order_by(Notification.id.desc()).all())


def phone_context(browser):
    return browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)


def to_checkout(page, live_server, factories, db):
    """Sign in (phone verified, so messages go by SMS), pick the first free slot, continue to payment."""
    from app.models import Appointment

    visit = factories.appointment_type(name="Video consult", price_cents=12500)
    provider = factories.provider(types=[visit], full_name="Dr. Dana Pay")
    me = factories.user("patient")
    me.phone_verified_at = datetime.now(timezone.utc)
    db.commit()
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill(me.email)
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Hello").wait_for()
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    page.get_by_role("link", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    db.expire_all()
    return db.query(Appointment).filter_by(patient_id=me.patient.id).one()


def pay_with(page, number):
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration (MM / YY)").fill(EXPIRY)
    page.get_by_label("CVC").fill(CVC)
    page.get_by_label("ZIP").fill(ZIP)
    page.get_by_role("button", name="Pay").click()


def decline_link_path(db, appointment_id) -> str:
    from app.models import Notification

    db.expire_all()
    [decline] = db.query(Notification).filter_by(template="payment_declined", appointment_id=appointment_id).all()
    link = decline.context["link"]
    return link[link.index("/r/"):]


def expect_booked_page(page, appointment):
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    expect(page.locator("section.card strong")).to_contain_text("Monday, December 7")
    expect(page.get_by_role("link", name="See your appointment")).to_have_attribute(
        "href", f"/appointments/{appointment.id}")
    expect(page.get_by_role("button", name="Book this time and pay")).to_have_count(0)
    expect(page.get_by_text("was just taken")).to_have_count(0)
    expect(page.get_by_text("These times are still free")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_declined_payment_sms_link_books_on_a_phone_then_says_booked(live_server, browser, phone, factories, db,
                                                                     clock, app, sandbox, jobs):
    from app.models import Appointment, Notification

    page = phone
    appointment = to_checkout(page, live_server, factories, db)
    pay_with(page, "4000000000009995")
    expect(page.get_by_text("Your card has insufficient funds.")).to_be_visible()
    jobs.run()
    assert outbox(db, "payment_declined") == []                    # the grace
    jobs.after_the_grace(clock)                                    # the patient walked away: the SMS goes

    [sms] = outbox(db, "payment_declined")
    assert sms.channel == "sms"
    link = URL.search(sms.body).group(0)
    path = link[link.index("/r/"):]

    preview = page.request.get(live_server + path)                 # what an SMS app's preview does
    assert preview.status == 200

    context = phone_context(browser)
    try:
        tap = context.new_page()                                   # the patient's messages app, not signed in
        tap.goto(live_server + path)
        tap.get_by_role("button", name="Book this time and pay").click()
        expect(tap.get_by_role("heading", name="Pay to book")).to_be_visible()
        pay_with(tap, "4242424242424242")
        expect(tap.get_by_role("heading", name="You're booked")).to_be_visible()
        assert tap.evaluate("document.documentElement.scrollWidth") <= 360
        db.expire_all()
        assert db.get(Appointment, appointment.id).status == "confirmed"

        tap.goto(live_server + path)                               # the same link again, later
        expect_booked_page(tap, appointment)
    finally:
        context.close()
    assert db.query(Notification).filter_by(template="payment_declined").count() == 1


def test_a_decline_recovered_on_the_page_sends_no_sms_and_its_link_says_booked(live_server, browser, phone,
                                                                               factories, db, clock, app,
                                                                               sandbox, jobs):
    from app.models import Appointment, Notification

    page = phone
    appointment = to_checkout(page, live_server, factories, db)
    pay_with(page, "4000000000009995")
    expect(page.get_by_text("Your card has insufficient funds.")).to_be_visible()
    jobs.run()                                                     # the decline message waits its grace
    page.get_by_label("Card number").fill("4242424242424242")      # another card, at once
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    jobs.run()
    jobs.after_the_grace(clock)

    assert len(outbox(db, "booking_confirmed")) == 1
    assert outbox(db, "payment_declined") == []                    # never sent
    db.expire_all()
    [decline] = db.query(Notification).filter_by(template="payment_declined").all()
    assert decline.status == "canceled" and decline.sent_at is None

    path = decline_link_path(db, appointment.id)                  # the link, had the SMS gone out
    context = phone_context(browser)
    try:
        tap = context.new_page()
        tap.goto(live_server + path)
        expect_booked_page(tap, appointment)
    finally:
        context.close()
    db.expire_all()
    assert db.query(Appointment).filter_by(patient_id=appointment.patient_id).count() == 1   # no second booking
    assert db.get(Appointment, appointment.id).status == "confirmed"
