"""A returning patient pays with their saved card in one tap on a phone, then removes the
card on their account page: it is gone from the page and detached in Stripe."""
import re

import pytest
from playwright.sync_api import expect

from app.services.gateway import gateway
from app.models import Appointment, Patient, PaymentAttempt
from app.services import audit, cards, payments
from app.services.audit import Actor
from tests.helpers.payments import SUCCESS, drain, settle, start
from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _clean_queue(app):
    """Holds and payments here schedule RQ jobs (hold expiry, polls): leave this run's queue empty."""
    drain(app)
    yield
    drain(app)


def saved_by_a_first_visit(db, held, clock, browser_pay, number=SUCCESS) -> Patient:
    """The first visit was paid with ``number`` and "Save this card for next time" ticked."""
    attempt = start(db, held, clock)
    payments.set_save_card(db, gateway(), attempt, True)
    db.commit()
    if getattr(browser_pay.pay(attempt, number), "status", None) == "requires_action":
        browser_pay.authenticate(attempt, success=True)
    assert settle(db, attempt).state == "confirmed"
    db.expire_all()
    cards.remember_default(db, gateway(), db.get(PaymentAttempt, attempt.id), patient=held.patient,
                           actor=Actor.system("test"))
    db.commit()
    return db.get(Patient, held.patient_id)


def customer_cards(sandbox, customer):
    import stripe

    http = stripe.RequestsClient()
    try:
        admin = stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base}, http_client=http)
        return [pm.id for pm in admin.v1.customers.payment_methods.list(customer, params={"type": "card"}).data]
    finally:
        http.close()


def test_returning_patient_pays_in_one_tap_then_removes_the_card(live_server, phone, db, held, clock,
                                                                 browser_pay, sandbox):
    patient = saved_by_a_first_visit(db, held, clock, browser_pay)
    [card] = customer_cards(sandbox, patient.stripe_customer_id)
    page = phone
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and
            re.search(r"/checkout/\d+/pay-saved$", r.url) else None)

    # A second visit: pick a slot, review, continue to payment.
    sign_in(page, live_server, patient.user.email)
    page.goto(f"{live_server}/book/providers/{held.provider_id}?type_id={held.type_id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    page.get_by_role("link", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    db.expire_all()
    second = db.query(Appointment).filter_by(patient_id=patient.id, status="held").one()

    one_tap = page.get_by_role("button", name="Pay with Visa •••• 4242")
    expect(one_tap).to_be_visible()
    expect(one_tap).to_be_enabled()
    assert one_tap.bounding_box()["height"] >= 44
    expect(page.get_by_text("Expires 12/34 · $125.00 in one tap")).to_be_visible()
    expect(page.get_by_role("heading", name="Use another card")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    # Stripe answers slowly: the button shows it is working, and a second tap does nothing.
    attempt = payments.current_attempt(db, second)
    sandbox.inject_faults("slow", path=f"/v1/payment_intents/{attempt.stripe_payment_intent_id}/confirm",
                          method="POST", delay=1.5)
    one_tap.dblclick()
    busy = page.locator("#saved-cards button.saved-card").first
    expect(busy).to_be_disabled()
    expect(busy).to_contain_text("Paying")
    expect(page.locator("#pay-button")).to_be_disabled()        # no other payment can start meanwhile

    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    expect(page.get_by_text("Paid: $125.00")).to_be_visible()
    assert len(posts) == 1, posts
    db.expire_all()
    assert db.get(Appointment, second.id).status == "confirmed"
    paid = payments.current_attempt(db, db.get(Appointment, second.id))
    assert paid.status == "succeeded" and paid.amount_captured_cents == 12500
    actions = audit.actions_for(db, appointment_id=second.id)
    assert actions.count(cards.CONFIRM_ACTION) == 1 and actions.count("payment.captured") == 1

    # Now the patient removes the card from their account.
    page.goto(f"{live_server}/")
    page.get_by_role("link", name="Your saved cards").click()
    expect(page.get_by_role("heading", name="Your saved cards")).to_be_visible()
    saved = page.get_by_role("region", name="Visa •••• 4242")
    expect(saved.get_by_text("Expires 12/34")).to_be_visible()
    saved.get_by_text("Remove", exact=True).click()                # asks once more first
    expect(saved.get_by_text("Remove Visa •••• 4242 from your account?")).to_be_visible()
    assert customer_cards(sandbox, patient.stripe_customer_id) == [card]
    saved.get_by_role("button", name="Yes, remove Visa •••• 4242").click()
    expect(page.get_by_text("Visa •••• 4242 was removed.")).to_be_visible()
    expect(page.get_by_role("region", name="Visa •••• 4242")).to_have_count(0)
    expect(page.get_by_text("You have no saved cards.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert customer_cards(sandbox, patient.stripe_customer_id) == []


def to_second_checkout(page, live_server, db, held, patient):
    sign_in(page, live_server, patient.user.email)
    page.goto(f"{live_server}/book/providers/{held.provider_id}?type_id={held.type_id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    page.get_by_role("link", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    db.expire_all()
    return db.query(Appointment).filter_by(patient_id=patient.id, status="held").one()


def test_one_tap_with_a_card_whose_bank_asks_for_3d_secure(live_server, phone, db, held, clock, browser_pay,
                                                           sandbox):
    patient = saved_by_a_first_visit(db, held, clock, browser_pay, number="4000002760003184")
    page = phone
    second = to_second_checkout(page, live_server, db, held, patient)
    page.get_by_role("button", name="Pay with Visa •••• 3184").click()
    challenge = page.get_by_role("dialog")
    expect(challenge).to_be_visible()
    expect(page.locator("#saved-cards button.saved-card")).to_be_disabled()   # busy while the bank asks
    # The patient fails it first: plain words, and the same card can be tapped again.
    challenge.get_by_role("button", name="Fail authentication").click()
    message = page.locator("#saved-card-message")
    expect(message).to_have_text("Your bank could not confirm it was you. Try again or use another card.")
    one_tap = page.get_by_role("button", name="Pay with Visa •••• 3184")
    expect(one_tap).to_be_enabled()
    one_tap.click()
    challenge = page.get_by_role("dialog")
    challenge.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    db.expire_all()
    assert db.get(Appointment, second.id).status == "confirmed"
    paid = payments.current_attempt(db, db.get(Appointment, second.id))
    assert paid.status == "succeeded" and paid.amount_captured_cents == 12500
    assert [f.code for f in paid.failures] == ["payment_intent_authentication_failure"]
