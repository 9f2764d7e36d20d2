"""The provider's Payouts page and its Stripe round trips, and the admin's readiness list (issue 16)."""
from __future__ import annotations

from app.models.payouts import ProviderAccount
from app.services import payout_accounts
from tests.helpers.payments import sign_in
from tests.helpers.web import IsolatedClient


def connect(client, forms):
    return forms.post("/staff/payouts/connect", {}, page="/staff/payouts")


def test_a_provider_connects_and_sees_the_status_in_plain_words(db, client, forms, provider, sandbox):
    sign_in(client, provider.user)
    page = client.get("/staff/payouts").get_data(as_text=True)
    assert "Not connected" in page and "Set up payouts" in page
    response = connect(client, forms)
    assert response.status_code == 303 and response.location.endswith("/staff/payouts")
    account = payout_accounts.account_for(db, provider.id)
    assert account.status == "onboarding" and account.stripe_account_id.startswith("acct_")
    page = client.get("/staff/payouts").get_data(as_text=True)
    assert "Onboarding not finished" in page and "Continue to Stripe" in page
    assert "Your payout account is created" in page
    assert account.stripe_account_id not in page          # Stripe's ids stay off the page
    # Pressing again does not make a second account.
    assert connect(client, forms).status_code == 303
    assert db.query(ProviderAccount).count() == 1


def test_refresh_makes_a_new_link_each_time_and_return_shows_the_status(db, client, forms, provider, sandbox):
    sign_in(client, provider.user)
    connect(client, forms)
    first = client.get("/staff/payouts/refresh")
    second = client.get("/staff/payouts/refresh")
    assert first.status_code == second.status_code == 303
    assert first.location.startswith(sandbox.api_base + "/_sandbox/onboarding/")
    assert second.location.startswith(sandbox.api_base + "/_sandbox/onboarding/")
    assert first.location != second.location
    back = client.get("/staff/payouts/return")
    assert back.status_code == 200 and "Onboarding not finished" in back.get_data(as_text=True)
    account = payout_accounts.account_for(db, provider.id)
    sandbox.onboard_account(account.stripe_account_id)
    back = client.get("/staff/payouts/return").get_data(as_text=True)
    assert "Ready to be paid" in back and "Continue to Stripe" not in back
    db.expire_all()
    assert payout_accounts.account_for(db, provider.id).status == "enabled"


def test_stripe_unreachable_is_said_and_nothing_breaks(db, client, forms, provider, sandbox):
    sign_in(client, provider.user)
    sandbox.inject_faults("drop_before", count=20, path="/v1/accounts", method="POST")
    response = connect(client, forms)
    assert response.status_code == 303
    assert "could not be reached" in client.get("/staff/payouts").get_data(as_text=True)
    account = payout_accounts.account_for(db, provider.id)
    assert account.status == "creating" and account.stripe_account_id is None
    sandbox.reset_faults()
    # The continue link finishes it (same key: one account).
    assert client.get("/staff/payouts/refresh").status_code == 303
    db.expire_all()
    assert payout_accounts.account_for(db, provider.id).status == "onboarding"


def test_another_provider_cannot_see_it(app, db, client, forms, provider, other_provider, sandbox):
    sign_in(client, provider.user)
    connect(client, forms)
    sandbox.onboard_account(payout_accounts.account_for(db, provider.id).stripe_account_id)
    client.get("/staff/payouts/return")
    other = app.test_client()
    assert isinstance(other, IsolatedClient)
    sign_in(other, other_provider.user)
    page = other.get("/staff/payouts").get_data(as_text=True)
    assert "Not connected" in page and "Ready to be paid" not in page
    # Their round-trip pages have no account of theirs to act on: back to their own page.
    assert other.get("/staff/payouts/return").status_code == 303
    assert other.get("/staff/payouts/refresh").status_code == 303
    assert payout_accounts.account_for(db, other_provider.id) is None


def test_admin_sees_who_is_ready_to_be_paid(app, db, client, forms, factories, provider, other_provider, sandbox):
    sign_in(client, provider.user)
    connect(client, forms)
    sandbox.onboard_account(payout_accounts.account_for(db, provider.id).stripe_account_id)
    client.get("/staff/payouts/return")
    admin_client = app.test_client()
    sign_in(admin_client, factories.user("admin"))
    html = admin_client.get("/admin/payouts").get_data(as_text=True)
    assert "1 of 2 providers ready to be paid" in html
    ready = html.split(f'id="payout-provider-{provider.id}"')[1].split("</tr>")[0]
    waiting = html.split(f'id="payout-provider-{other_provider.id}"')[1].split("</tr>")[0]
    assert "Ready to be paid" in ready and "<td>Yes</td>" in ready
    assert "Not connected" in waiting and "<td>No</td>" in waiting
    assert "Provider payouts" in admin_client.get("/admin/").get_data(as_text=True)
