"""Wallets (Apple Pay, Google Pay) in the sandbox: the API side through the SDK, and the Payment Element's
wallet buttons and wallet sheet in Chromium (phone viewport)."""
from __future__ import annotations


import pytest
import stripe
from playwright.sync_api import expect

from tests.helpers.stripe_shapes import NESTED
from tests.helpers.stripe_shapes import assert_shape, raw
from tests.stripe_sandbox import test_sandbox_browser as browser_page

page_server = browser_page.page_server      # the host page on another origin, and a phone-sized page
page = browser_page.page
fill_card = browser_page.fill_card

WALLETS_INIT = 'window.__stripeSandboxWallets = ["apple_pay", "google_pay"];'


def wallet_card(client, wallet: str, number: str = "4242424242424242"):
    """What the sandbox's Stripe.js wallet sheet sends (publishable key in the browser; any key works)."""
    return client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "wallet": wallet}})


# -- the API -------------------------------------------------------------------------------------

def test_automatic_payment_methods_is_reflected(client):
    pi = client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd",
                                                  "automatic_payment_methods": {"enabled": True}})
    assert pi.automatic_payment_methods.enabled is True
    assert pi.automatic_payment_methods.allow_redirects == "always"
    assert pi.payment_method_types == ["card"]
    pi = client.v1.payment_intents.create(params={
        "amount": 2500, "currency": "usd",
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}})
    assert pi.automatic_payment_methods.allow_redirects == "never"
    assert client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd"}) \
        .automatic_payment_methods is None


def test_automatic_payment_methods_cannot_be_combined_with_payment_method_types(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd",
                                                 "automatic_payment_methods": {"enabled": True},
                                                 "payment_method_types": ["card"]})
    assert err.value.http_status == 400
    assert err.value.error.type == "invalid_request_error"
    assert "automatic_payment_methods, payment_method_types" in err.value.error.message
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd",
                                                 "automatic_payment_methods": {"allow_redirects": "never"}})
    assert err.value.error.param == "automatic_payment_methods[enabled]"
    assert err.value.error.code == "parameter_missing"


@pytest.mark.parametrize("wallet", ["apple_pay", "google_pay"])
def test_a_wallet_card_payment_method_and_its_charge(pk_client, client, wallet):
    pm = wallet_card(pk_client, wallet)
    card = raw(pm)["card"]
    assert card["wallet"] == {"dynamic_last4": "4242", "type": wallet, wallet: {}}
    assert card["last4"] == "4242" and card["checks"]["cvc_check"] is None
    assert_shape("payment_method.card", card, NESTED["payment_method.card"])
    assert "_sandbox" not in raw(pm) and "wallet" not in raw(pm)
    pi = client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True,
                                                  "automatic_payment_methods": {"enabled": True,
                                                                                "allow_redirects": "never"}})
    assert pi.status == "succeeded"
    charge = raw(client.v1.charges.retrieve(pi.latest_charge))
    details = charge["payment_method_details"]["card"]
    assert details["wallet"]["type"] == wallet and details["wallet"]["dynamic_last4"] == "4242"
    assert_shape("charge.payment_method_details.card", details, NESTED["charge.payment_method_details.card"])
    assert client.v1.payment_methods.retrieve(pm.id).card.wallet.type == wallet


def test_a_wallet_card_follows_the_test_card_behaviour(pk_client, client):
    pm = wallet_card(pk_client, "apple_pay", "4000000000000002")
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "payment_method": pm.id,
                                                 "confirm": True})
    assert err.value.error.decline_code == "generic_decline"
    charge = raw(client.v1.charges.retrieve(err.value.error.charge))
    assert charge["status"] == "failed"
    assert charge["payment_method_details"]["card"]["wallet"]["type"] == "apple_pay"
    pm = wallet_card(pk_client, "google_pay", "4000002500003155")
    pi = client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True})
    assert pi.status == "requires_action"


def test_an_unknown_wallet_is_refused(pk_client, client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        wallet_card(pk_client, "samsung_pay")
    assert err.value.error.param == "card[wallet]"
    with pytest.raises(stripe.InvalidRequestError) as err:       # only on POST /v1/payment_methods
        client.v1.payment_intents.create(params={
            "amount": 2500, "currency": "usd", "payment_method_data": {
                "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034,
                                         "wallet": "apple_pay"}}})
    assert err.value.error.param == "payment_method_data[card][wallet]"


# -- the browser -----------------------------------------------------------------------------------

def open_checkout(page, page_server, sandbox, client, *, wallets: bool, apm: bool = True):
    if wallets:
        page.add_init_script(WALLETS_INIT)
    params = {"amount": 2500, "currency": "usd"}
    params.update({"automatic_payment_methods": {"enabled": True}} if apm else {"payment_method_types": ["card"]})
    pi = client.v1.payment_intents.create(params=params)
    page.goto(f"{page_server}/checkout?pk={sandbox.publishable_key}&cs={pi.client_secret}")
    expect(page.get_by_label("Card number")).to_be_visible()
    return pi


def pay_button(page):
    return page.get_by_role("button", name="Pay", exact=True)


@pytest.mark.e2e
def test_without_wallet_support_no_wallet_buttons(page, page_server, sandbox, client):
    open_checkout(page, page_server, sandbox, client, wallets=False)
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("button", name="Apple Pay")).to_have_count(0)
    expect(page.get_by_role("button", name="Google Pay")).to_have_count(0)
    assert page.evaluate("Stripe('%s').paymentRequest({country: 'US', currency: 'usd', "
                         "total: {label: 'Visit', amount: 2500}}).canMakePayment()" % sandbox.publishable_key) is None


@pytest.mark.e2e
def test_wallet_support_without_automatic_payment_methods_no_buttons(page, page_server, sandbox,
                                                                     client):
    open_checkout(page, page_server, sandbox, client, wallets=True, apm=False)
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("button", name="Google Pay")).to_have_count(0)


@pytest.mark.e2e
def test_google_pay_with_4242_succeeds(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client, wallets=True)
    apple, google = page.get_by_role("button", name="Apple Pay"), page.get_by_role("button", name="Google Pay")
    expect(apple).to_be_visible()
    expect(google).to_be_visible()
    assert google.bounding_box()["height"] >= 44
    assert page.evaluate("Stripe('%s').paymentRequest({country: 'US', currency: 'usd', "
                         "total: {label: 'Visit', amount: 2500}}).canMakePayment()" % sandbox.publishable_key) \
        == {"applePay": True, "googlePay": True, "link": False}
    google.click()
    expect(google).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_label("Card number")).to_be_hidden()        # the wallet gives the card
    expect(page.locator("body")).to_have_attribute("data-complete", "true")
    pay_button(page).click()
    sheet = page.get_by_role("dialog")
    expect(sheet.get_by_role("heading", name="Google Pay")).to_be_visible()
    expect(sheet.get_by_label("Card in wallet")).to_have_value("4242424242424242")     # the default
    sheet.get_by_role("button", name="Pay with Google Pay").click()
    expect(page.locator("#status")).to_have_text("paid:succeeded")
    expect(sheet).to_have_count(0)
    got = client.v1.payment_intents.retrieve(pi.id)
    assert got.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(got.payment_method)
    assert pm.card.wallet.type == "google_pay" and pm.card.last4 == "4242"
    charge = client.v1.charges.retrieve(got.latest_charge)
    assert charge.payment_method_details.card.wallet.type == "google_pay"


@pytest.mark.e2e
def test_apple_pay_with_a_decline_card_is_declined(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client, wallets=True)
    page.get_by_role("button", name="Apple Pay").click()
    pay_button(page).click()
    sheet = page.get_by_role("dialog")
    sheet.get_by_label("Card in wallet").select_option("4000000000000002")
    sheet.get_by_role("button", name="Pay with Apple Pay").click()
    expect(page.locator("#status")).to_have_text("error:generic_decline")
    expect(page.locator("#message")).to_have_text("Your card was declined.")
    got = client.v1.payment_intents.retrieve(pi.id)
    assert got.status == "requires_payment_method"
    assert got.last_payment_error.decline_code == "generic_decline"
    assert got.last_payment_error.payment_method.card.wallet.type == "apple_pay"


@pytest.mark.e2e
def test_wallet_3ds_card_asks_for_authentication(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client, wallets=True)
    page.get_by_role("button", name="Google Pay").click()
    pay_button(page).click()
    sheet = page.get_by_role("dialog")
    sheet.get_by_label("Card in wallet").select_option("4000002500003155")
    sheet.get_by_role("button", name="Pay with Google Pay").click()
    page.get_by_role("dialog").get_by_role("button", name="Complete authentication").click()
    expect(page.locator("#status")).to_have_text("paid:succeeded")
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


@pytest.mark.e2e
def test_closing_the_wallet_sheet_charges_nothing_and_the_card_form_comes_back(page, page_server, sandbox,
                                                                              client):
    pi = open_checkout(page, page_server, sandbox, client, wallets=True)
    page.get_by_role("button", name="Apple Pay").click()
    pay_button(page).click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.locator("#message")).to_contain_text("Apple Pay was closed before paying")
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"
    page.get_by_role("button", name="Pay by card instead").click()
    fill_card(page, "4242424242424242")
    pay_button(page).click()
    expect(page.locator("#status")).to_have_text("paid:succeeded")
    pm = client.v1.payment_methods.retrieve(client.v1.payment_intents.retrieve(pi.id).payment_method)
    assert pm.card.wallet is None
