"""A provider connects a payout account on a laptop (1280 x 800): signs in (with the authenticator's
code), opens Payouts, sets it up, continues to the sandbox's Stripe onboarding page through the
account link, submits it, and comes back to "Ready to be paid" (issue 16)."""
import pytest

from app.services import payout_accounts
from tests.helpers.phone import onboard_payouts

pytestmark = pytest.mark.e2e


def test_a_provider_onboards_through_the_account_link(live_server, laptop, db, provider, sandbox):
    page = laptop
    onboard_payouts(page, live_server, db, provider)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    db.expire_all()
    assert payout_accounts.account_for(db, provider.id).status == "enabled"
