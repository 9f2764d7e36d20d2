"""A provider connects a payout account on a laptop (1280 x 800): signs in (with the authenticator's
code), opens Payouts, sets it up, continues to the sandbox's Stripe onboarding page through the
account link, submits it, and comes back to "Ready to be paid" (issue 16)."""
import pytest
from playwright.sync_api import expect

from app.services import payout_accounts
from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e


def test_a_provider_onboards_through_the_account_link(live_server, laptop, db, provider, sandbox):
    page = laptop
    sign_in(page, live_server, provider.user.email)
    page.get_by_role("link", name="Payouts").click()
    page.wait_for_url(lambda url: url.endswith("/staff/payouts"))
    expect(page.locator("#payout-words")).to_have_text("Not connected")
    page.get_by_role("button", name="Set up payouts").click()
    expect(page.locator("#payout-words")).to_have_text("Onboarding not finished")
    page.get_by_role("link", name="Continue to Stripe").click()

    page.wait_for_url(lambda url: "/_sandbox/onboarding/" in url)
    expect(page.locator("#account")).to_have_text(payout_accounts.account_for(db, provider.id).stripe_account_id)
    page.get_by_role("button", name="Agree and submit").click()

    page.wait_for_url(lambda url: url.startswith(live_server) and "/staff/payouts/return" in url)
    expect(page.locator("#payout-words")).to_have_text("Ready to be paid")
    expect(page.get_by_text("You are ready to be paid")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    db.expire_all()
    assert payout_accounts.account_for(db, provider.id).status == "enabled"
