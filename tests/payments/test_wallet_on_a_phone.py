"""On a phone whose wallet is ready (Apple Pay / Google Pay, as the sandbox's Stripe.js is told a real
phone would report it): the patient's card is declined, the message offers the wallet, and paying with
the wallet books the visit. On a phone without a wallet the decline does not mention one."""
import pytest
from playwright.sync_api import expect

from tests.payments import test_checkout_on_a_phone as checkout

stripe_admin = checkout.stripe_admin          # the sandbox seen with the secret key (a fixture)
to_checkout, fill_card = checkout.to_checkout, checkout.fill_card
assert_booked_and_captured_once = checkout.assert_booked_and_captured_once

pytestmark = pytest.mark.e2e

WALLET = 'window.__stripeSandboxWallets = ["google_pay"];'


def test_after_a_decline_the_phone_wallet_is_offered_and_books_the_visit(live_server, phone, factories, clock,
                                                                          db, sandbox, stripe_admin):
    page = phone
    page.add_init_script(WALLET)             # this phone has Google Pay ready
    appointment = to_checkout(page, live_server, factories, db)
    google = page.get_by_role("button", name="Google Pay", exact=True)
    expect(google).to_be_visible()
    expect(page.get_by_role("button", name="Apple Pay")).to_have_count(0)
    assert google.bounding_box()["height"] >= 44
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    fill_card(page, "4000000000000002")
    page.get_by_role("button", name="Pay $125.00").click()
    message = page.locator("#payment-message")
    expect(message).to_contain_text("Your card was declined.")
    expect(message).to_contain_text("You can also pay with Google Pay on this phone")
    expect(page.get_by_role("button", name="Pay $125.00")).to_be_enabled()

    google.click()
    expect(google).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_label("Card number")).to_be_hidden()
    page.get_by_role("button", name="Pay $125.00").click()
    sheet = page.get_by_role("dialog")
    expect(sheet.get_by_role("heading", name="Google Pay")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    sheet.get_by_role("button", name="Pay with Google Pay").click()          # the wallet's 4242
    attempt = assert_booked_and_captured_once(page, db, appointment, stripe_admin)
    assert [f.decline_code for f in attempt.failures] == ["generic_decline"]
    intent = stripe_admin.v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert intent.automatic_payment_methods.enabled is True
    pm = stripe_admin.v1.payment_methods.retrieve(intent.payment_method)
    assert pm.card.wallet.type == "google_pay"


def test_without_a_wallet_the_decline_does_not_mention_one(live_server, phone, factories, clock, db, sandbox):
    page = phone
    to_checkout(page, live_server, factories, db)
    fill_card(page, "4000000000000002")
    page.get_by_role("button", name="Pay $125.00").click()
    message = page.locator("#payment-message")
    expect(message).to_have_text("Your card was declined. Please try another card or payment method.")
    expect(page.get_by_role("button", name="Google Pay")).to_have_count(0)
    expect(page.get_by_role("button", name="Apple Pay")).to_have_count(0)
