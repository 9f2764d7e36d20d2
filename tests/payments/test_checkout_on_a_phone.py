"""A patient pays the deposit on a phone, in Chromium, through the Stripe sandbox's
Stripe.js: a card that works, a decline then another card, and 3-D Secure."""
import re

import pytest
import stripe
from playwright.sync_api import expect

from tests.helpers.phone import fill_card, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def stripe_admin(sandbox):
    """The sandbox seen with the secret key, as the clinic's Stripe dashboard would show it."""
    http = stripe.RequestsClient()
    yield stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base}, http_client=http)
    http.close()


class Traffic:
    """What the page sent: confirmations to Stripe and completions to the portal."""

    def __init__(self, page):
        self.confirms, self.completes = [], []
        page.on("request", self._seen)

    def _seen(self, request):
        if request.method != "POST":
            return
        if re.search(r"/v1/payment_intents/[^/]+/confirm$", request.url.split("?")[0]):
            self.confirms.append(request.url)
        elif re.search(r"/checkout/\d+/complete$", request.url):
            self.completes.append(request.url)


def to_checkout(page, live_server, factories, db, *, on_review=None):
    """Sign in, pick the first free slot, review it, continue to payment. Returns the appointment."""
    from app.models import Appointment

    visit = factories.appointment_type(name="Video consult", price_cents=12500)
    provider = factories.provider(types=[visit], full_name="Dr. Dana Pay")
    me = factories.user("patient")
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    if on_review:
        on_review()
    page.get_by_role("link", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    db.expire_all()
    appointment = db.query(Appointment).filter_by(patient_id=me.patient.id).one()
    assert appointment.status == "held"
    return appointment


def the_attempts(db, appointment):
    from app.models import Charge, PaymentAttempt

    db.expire_all()
    return (db.query(PaymentAttempt).join(Charge).filter(Charge.appointment_id == appointment.id)
            .order_by(PaymentAttempt.number).all())


def assert_booked_and_captured_once(page, db, appointment, stripe_admin):
    from app.models import Appointment
    from app.services import audit

    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    expect(page.get_by_text("Paid: $125.00")).to_be_visible()
    link = page.get_by_role("link", name="Join the video visit")
    expect(link).to_be_visible()
    expect(page.get_by_text("The link opens 10 minutes before the start.")).to_be_visible()
    assert link.get_attribute("href").endswith(f"/visits/{appointment.id}/join")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    db.expire_all()
    booked = db.get(Appointment, appointment.id)
    assert booked.status == "confirmed" and booked.telehealth_room
    [attempt] = the_attempts(db, appointment)
    assert attempt.status == "succeeded" and attempt.amount_captured_cents == 12500
    assert audit.actions_for(db, appointment_id=appointment.id).count("payment.captured") == 1
    intent = stripe_admin.v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert intent.status == "succeeded" and intent.amount_received == 12500
    intents = stripe_admin.v1.payment_intents.list(params={"customer": booked.patient.stripe_customer_id})
    assert [i.id for i in intents.data] == [attempt.stripe_payment_intent_id]
    return attempt


def test_pay_with_4242_books_the_visit_and_shows_the_link(live_server, phone, factories, clock, db, sandbox,
                                                         stripe_admin):
    page = phone
    traffic = Traffic(page)
    appointment = to_checkout(page, live_server, factories, db)
    # What the patient is paying for, and how long the time is held for them.
    expect(page.get_by_text("Video consult with Dr. Dana Pay")).to_be_visible()
    expect(page.get_by_text("Total: $125.00")).to_be_visible()
    timer = page.get_by_role("timer")
    expect(timer).to_contain_text("left")
    first = page.locator(".remaining").inner_text()
    assert first in ("10:00", "9:59", "9:58", "9:57")
    expect(page.locator(".remaining")).not_to_have_text(first)          # it counts down
    pay = page.get_by_role("button", name="Pay $125.00")
    expect(pay).to_be_enabled()
    assert pay.bounding_box()["height"] >= 44
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # "Save this card" is a small box beside its words, and ticking it just before paying counts.
    save = page.get_by_label("Save this card for next time")
    box, words = save.bounding_box(), page.locator("label.checkbox").bounding_box()
    assert box["width"] <= 32 and box["height"] <= 32
    assert words["height"] < 2 * 44, "the box and its words should share a line"
    save.check()

    [attempt] = the_attempts(db, appointment)
    # Stripe answers slowly, so the patient can see the button at work, and taps twice.
    sandbox.inject_faults("slow", path=f"/v1/payment_intents/{attempt.stripe_payment_intent_id}/confirm",
                          method="POST", delay=1.5)
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay $125.00").dblclick()
    busy = page.locator("#pay-button")
    expect(busy).to_be_disabled()
    expect(busy).to_contain_text("Confirming")
    expect(busy.locator(".spinner")).to_be_visible()
    # A third try while it confirms (e.g. Enter in a field) does nothing either.
    page.locator("#payment-form").evaluate("f => f.requestSubmit()")
    attempt = assert_booked_and_captured_once(page, db, appointment, stripe_admin)
    assert len(traffic.confirms) == 1, traffic.confirms
    assert len(traffic.completes) == 1, traffic.completes
    assert attempt.save_card
    intent = stripe_admin.v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert intent.setup_future_usage == "off_session"        # the card is kept for the next visit


def test_a_decline_says_why_in_plain_words_and_another_card_then_books(live_server, phone, factories, clock, db,
                                                                      sandbox, stripe_admin):
    from app.models import Appointment

    page = phone
    traffic = Traffic(page)
    appointment = to_checkout(page, live_server, factories, db)
    fill_card(page, "4000000000009995")
    page.get_by_role("button", name="Pay $125.00").click()
    message = page.locator("#payment-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("Your card has insufficient funds.")
    expect(message).not_to_contain_text("insufficient_funds")
    # The patient can try again at once, on the same page, with the hold still running.
    pay = page.get_by_role("button", name="Pay $125.00")
    expect(pay).to_be_enabled()
    expect(page.get_by_role("timer")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    db.expire_all()
    assert db.get(Appointment, appointment.id).status == "held"

    page.get_by_label("Card number").fill("4242424242424242")
    pay.click()
    attempt = assert_booked_and_captured_once(page, db, appointment, stripe_admin)
    assert [f.decline_code for f in attempt.failures] == ["insufficient_funds"]
    assert len(traffic.confirms) == 2 and len(set(traffic.confirms)) == 1      # the same PaymentIntent


def test_3d_secure_challenge_completed_books_the_visit(live_server, phone, factories, clock, db, sandbox,
                                                      stripe_admin):
    from app.services import audit

    page = phone
    appointment = to_checkout(page, live_server, factories, db)
    fill_card(page, "4000002500003155")
    page.get_by_role("button", name="Pay $125.00").click()
    challenge = page.get_by_role("dialog")
    expect(challenge).to_be_visible()
    # While the bank asks, the pay button stays busy: no second payment can start.
    expect(page.locator("#pay-button")).to_be_disabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    challenge.get_by_role("button", name="Complete authentication").click()
    expect(challenge).to_be_hidden()
    assert_booked_and_captured_once(page, db, appointment, stripe_admin)
    actions = audit.actions_for(db, appointment_id=appointment.id)
    assert "booking.confirmed" in actions and "payment.succeeded" in actions


def test_when_the_hold_runs_out_on_the_page_paying_stops(live_server, phone, factories, clock, db, sandbox):
    from datetime import timedelta

    page = phone
    traffic = Traffic(page)
    # The patient lingers on the review page until three seconds of the hold are left.
    to_checkout(page, live_server, factories, db, on_review=lambda: clock.advance(timedelta(seconds=597)))
    expect(page.get_by_role("timer")).to_contain_text("0:0")
    expect(page.get_by_text("Your hold has expired.")).to_be_visible()
    expect(page.get_by_role("link", name="Pick a time again")).to_be_visible()
    expect(page.get_by_role("button", name="Pay $125.00")).to_be_hidden()
    fill_card(page, "4242424242424242")
    page.locator("#payment-form").evaluate("f => f.requestSubmit()")      # Enter in a field
    expect(page.get_by_role("button", name=re.compile("Confirming"))).to_have_count(0)
    assert traffic.confirms == [] and traffic.completes == []
