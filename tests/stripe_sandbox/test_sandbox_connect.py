"""Connect through the official SDK: accounts, account links and the onboarding page, the Stripe-Account header,
the balance and balance transactions (pending until available_on; 4000000000000077 available at once)."""
from __future__ import annotations

import urllib.parse

import pytest
import requests
import stripe

from tests.helpers.stripe_shapes import SHAPES
from tests.helpers.stripe_shapes import assert_shape as assert_stripe_shape, raw


# Keys and JSON types of Stripe's canonical objects in ../shared/stripe/fixtures3.json (derived once, as
# tests/helpers/stripe_shapes.py is) for the Connect resources that file's SHAPES does not list.
CONNECT_SHAPES = {
    "account": SHAPES["account"],
    "transfer": SHAPES["transfer"],
    "account_link": {"created": "integer", "expires_at": "integer", "object": "string", "url": "string"},
    "transfer_reversal": {"amount": "integer", "balance_transaction": "null", "created": "integer",
                          "currency": "string", "destination_payment_refund": "null", "id": "string",
                          "metadata": "object", "object": "string", "source_refund": "null", "transfer": "string"},
    "balance": {"available": "array", "connect_reserved": "array", "livemode": "boolean", "object": "string",
                "pending": "array"},
    "balance_transaction": {"amount": "integer", "available_on": "integer", "created": "integer",
                            "currency": "string", "description": "string", "exchange_rate": "null",
                            "fee": "integer", "fee_details": "array", "id": "string", "net": "integer",
                            "object": "string", "reporting_category": "string", "source": "string",
                            "status": "string", "type": "string", "balance_type": "string"},
    "payout": {"amount": "integer", "application_fee": "null", "application_fee_amount": "null",
               "arrival_date": "integer", "automatic": "boolean", "balance_transaction": "string",
               "created": "integer", "currency": "string", "description": "string", "destination": "string",
               "failure_balance_transaction": "null", "failure_code": "null", "failure_message": "null",
               "id": "string", "livemode": "boolean", "metadata": "object", "method": "string",
               "object": "string", "original_payout": "null", "reconciliation_status": "string",
               "reversed_by": "null", "source_type": "string", "statement_descriptor": "null",
               "status": "string", "type": "string", "trace_id": "object", "payout_method": "null"},
}
# non-null in the fixture, documented nullable by Stripe's API reference
CONNECT_NULLABLE = {
    "account": {"email", "business_profile", "controller", "country", "default_currency", "external_accounts",
                "future_requirements", "metadata", "requirements", "settings", "tos_acceptance", "type",
                "details_submitted", "charges_enabled", "payouts_enabled", "capabilities"},
    "transfer": {"balance_transaction", "destination", "destination_payment", "description", "source_type"},
    "balance_transaction": {"description"},
    "payout": {"balance_transaction", "description", "destination", "trace_id"},
}


def assert_shape(resource: str, obj: dict):
    assert_stripe_shape(resource, obj, CONNECT_SHAPES[resource], CONNECT_NULLABLE.get(resource, set()))


def as_account(acct_id: str) -> dict:
    return {"stripe_account": acct_id}


def new_account(client, **extra):
    params = {"type": "express", "country": "US", "email": "provider@example.com",
              "capabilities": {"transfers": {"requested": True}, "card_payments": {"requested": True}}}
    params.update(extra)
    return client.v1.accounts.create(params=params)


def onboarding_link(client, acct_id: str):
    return client.v1.account_links.create(params={
        "account": acct_id, "type": "account_onboarding",
        "refresh_url": "https://portal.example/connect/refresh", "return_url": "https://portal.example/connect/done"})


def charge(client, new_card, amount: int, number: str = "4242424242424242", **extra):
    pm = new_card(number)
    return client.v1.payment_intents.create(params={"amount": amount, "currency": "usd", "payment_method": pm.id,
                                                    "confirm": True, "expand": ["latest_charge"], **extra})


def bal(client, account: str | None = None, currency: str = "usd") -> tuple[int, int]:
    b = client.v1.balance.retrieve(options=as_account(account) if account else {})
    av = next((x.amount for x in b.available if x.currency == currency), 0)
    pe = next((x.amount for x in b.pending if x.currency == currency), 0)
    return av, pe


# -- accounts ------------------------------------------------------------------------------------------
def test_account_create_retrieve_update_list(client):
    acct = new_account(client, metadata={"provider_id": "42"})
    data = raw(acct)
    assert_shape("account", data)
    assert acct.id.startswith("acct_") and acct.type == "express" and acct.object == "account"
    assert acct.details_submitted is False and acct.charges_enabled is False and acct.payouts_enabled is False
    assert acct.capabilities.transfers == "inactive" and acct.capabilities.card_payments == "inactive"
    assert "external_account" in acct.requirements.currently_due
    assert acct.requirements.disabled_reason == "requirements.past_due"
    assert acct.controller.stripe_dashboard.type == "express"
    assert acct.settings.payouts.schedule.interval == "daily"
    assert acct.external_accounts.data == [] and acct.metadata["provider_id"] == "42"

    got = client.v1.accounts.retrieve(acct.id)
    assert got.id == acct.id and got.email == "provider@example.com"

    upd = client.v1.accounts.update(acct.id, params={
        "settings": {"payouts": {"schedule": {"interval": "manual"}}},
        "external_account": {"object": "bank_account", "country": "US", "currency": "usd",
                             "routing_number": "110000000", "account_number": "000123456789"},
        "business_profile": {"name": "Dr. Test"}})
    assert upd.settings.payouts.schedule.interval == "manual"
    ba = upd.external_accounts.data[0]
    assert ba.object == "bank_account" and ba.last4 == "6789" and ba.routing_number == "110000000"
    assert ba.bank_name == "STRIPE TEST BANK" and ba.default_for_currency is True
    assert "external_account" not in upd.requirements.currently_due
    assert upd.business_profile.name == "Dr. Test"
    # a token replaces the default bank account
    upd2 = client.v1.accounts.update(acct.id, params={"external_account": "btok_us_verified_noAccount"})
    assert [b.last4 for b in upd2.external_accounts.data] == ["1116"]

    listed = client.v1.accounts.list(params={"limit": 100})
    assert acct.id in [a.id for a in listed.data]

    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.accounts.update(acct.id, params={"settings": {"payouts": {"schedule": {"interval": "hourly"}}}})
    assert e.value.http_status == 400 and e.value.param == "settings[payouts][schedule][interval]"


def test_account_with_controller_params(client):
    acct = client.v1.accounts.create(params={"controller": {
        "stripe_dashboard": {"type": "express"}, "fees": {"payer": "application"},
        "losses": {"payments": "application"}}})
    assert acct.type == "express" and acct.controller.type == "application"


def test_unknown_account_is_account_invalid(client):
    with pytest.raises(stripe.PermissionError) as e:
        client.v1.accounts.retrieve("acct_doesnotexist00")
    err = e.value.json_body["error"]
    assert e.value.http_status == 403 and err["type"] == "invalid_request_error"
    assert err["code"] == "account_invalid" and "does not have access to account 'acct_doesnotexist00'" \
        in err["message"]
    with pytest.raises(stripe.PermissionError) as e:
        client.v1.balance.retrieve(options=as_account("acct_doesnotexist00"))
    assert e.value.json_body["error"]["code"] == "account_invalid"


# -- account links and the onboarding page -------------------------------------------------------------
def test_onboarding_page_completes_onboarding(sandbox, client, webhooks):
    acct = new_account(client)
    link = onboarding_link(client, acct.id)
    assert_shape("account_link", raw(link))
    assert link.object == "account_link" and 60 <= link.expires_at - link.created <= 900
    assert link.url.startswith(sandbox.api_base + "/")

    # until onboarded, transfers to the account are refused
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    err = e.value.json_body["error"]
    assert e.value.http_status == 400 and err["type"] == "invalid_request_error"
    assert err["code"] == "insufficient_capabilities_for_transfer"
    assert err["message"].startswith("Your destination account needs to have at least one of the following "
                                     "capabilities enabled: transfers")

    http = requests.Session()
    page = http.get(link.url, allow_redirects=False)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "<form" in page.text and "000123456789" in page.text and acct.id in page.text
    form = {"business_name": "Dr. Rosen", "account_number": "000123456789", "routing_number": "110000000",
            "tos": "accepted"}
    action = urllib.parse.urljoin(link.url, "/_sandbox/onboarding/" + link.url.rsplit("/", 1)[1])
    done = http.post(action, data=form, allow_redirects=False)
    assert done.status_code == 303 and done.headers["Location"] == "https://portal.example/connect/done"

    acct2 = client.v1.accounts.retrieve(acct.id)
    assert acct2.details_submitted and acct2.charges_enabled and acct2.payouts_enabled
    assert acct2.capabilities.transfers == "active" and acct2.capabilities.card_payments == "active"
    assert acct2.requirements.currently_due == [] and acct2.requirements.disabled_reason is None
    assert acct2.external_accounts.data[0].last4 == "6789"
    assert acct2.business_profile.name == "Dr. Rosen"

    evts = webhooks.wait_for(lambda ev: any(e["type"] == "account.updated" and
                                            e["data"]["object"]["id"] == acct.id for e in ev))
    evt = next(e for e in evts if e["type"] == "account.updated" and e["data"]["object"]["id"] == acct.id)
    assert evt["account"] == acct.id
    assert_shape("account", evt["data"]["object"])
    prev = evt["data"]["previous_attributes"]
    assert prev["details_submitted"] is False and prev["charges_enabled"] is False
    assert prev["capabilities"]["transfers"] == "inactive"

    # the link is single use: visiting it again goes to refresh_url
    again = http.get(link.url, allow_redirects=False)
    assert again.status_code == 303 and again.headers["Location"] == "https://portal.example/connect/refresh"


def test_expired_link_goes_to_refresh_url(sandbox, client):
    acct = new_account(client)
    link = onboarding_link(client, acct.id)
    sandbox.advance_clock(link.expires_at - link.created + 1)
    r = requests.get(link.url, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "https://portal.example/connect/refresh"
    r = requests.post(link.url, data={"tos": "accepted"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "https://portal.example/connect/refresh"
    assert client.v1.accounts.retrieve(acct.id).details_submitted is False
    # a fresh link works
    link2 = onboarding_link(client, acct.id)
    r = requests.post(link2.url, data={"tos": "accepted"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].endswith("/connect/done")
    assert client.v1.accounts.retrieve(acct.id).capabilities.transfers == "active"


def test_account_link_errors(client):
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.account_links.create(params={
            "account": "acct_nope000000000", "type": "account_onboarding",
            "refresh_url": "https://x.example/r", "return_url": "https://x.example/d"})
    assert e.value.code == "resource_missing" and e.value.param == "account"
    acct = new_account(client)
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.account_links.create(params={"account": acct.id, "type": "account_onboarding",
                                               "refresh_url": "https://x.example/r"})
    assert e.value.code == "parameter_missing" and e.value.param == "return_url"


# -- balance and balance transactions ------------------------------------------------------------------
def test_charge_funds_pending_until_available_on(sandbox, client, new_card):
    av0, pe0 = bal(client)
    pi = charge(client, new_card, 10000)
    ch = pi.latest_charge
    txn = client.v1.balance_transactions.retrieve(ch.balance_transaction)
    assert_shape("balance_transaction", raw(txn))
    assert txn.status == "pending" and txn.type == "charge" and txn.source == ch.id
    assert txn.available_on - txn.created == 2 * 86400 and txn.net == 10000 - txn.fee
    av1, pe1 = bal(client)
    assert pe1 - pe0 == txn.net and av1 == av0
    b = raw(client.v1.balance.retrieve())
    assert_shape("balance", b)
    assert b["available"][0]["source_types"]["card"] == b["available"][0]["amount"]

    sandbox.advance_clock(2 * 86400 + 1)
    assert client.v1.balance_transactions.retrieve(txn.id).status == "available"
    av2, pe2 = bal(client)
    assert av2 - av1 >= txn.net and pe2 <= pe1 - txn.net


def test_available_at_once_with_0077(client, new_card):
    av0, pe0 = bal(client)
    ch = charge(client, new_card, 5000, "4000000000000077").latest_charge
    txn = client.v1.balance_transactions.retrieve(ch.balance_transaction)
    assert txn.status == "available" and txn.available_on == txn.created
    av1, pe1 = bal(client)
    assert av1 - av0 == txn.net and pe1 == pe0


def test_balance_transactions_list_filters(client, new_card):
    ch = charge(client, new_card, 3000).latest_charge
    by_source = client.v1.balance_transactions.list(params={"source": ch.id})
    assert [t.id for t in by_source.data] == [ch.balance_transaction]
    charges_only = client.v1.balance_transactions.list(params={"type": "charge", "limit": 5})
    assert charges_only.data and all(t.type == "charge" for t in charges_only.data)
    page1 = client.v1.balance_transactions.list(params={"limit": 2})
    assert len(page1.data) == 2 and page1.has_more
    page2 = client.v1.balance_transactions.list(params={"limit": 2, "starting_after": page1.data[-1].id})
    assert not {t.id for t in page1.data} & {t.id for t in page2.data}
    created = client.v1.balance_transactions.list(params={"created": {"gte": ch.created}, "limit": 100})
    assert ch.balance_transaction in [t.id for t in created.data]
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.balance_transactions.list(params={"type": "bogus"})
    assert e.value.param == "type"


def test_connected_account_balance_is_its_own(sandbox, client):
    acct = new_account(client)
    sandbox.onboard_account(acct.id)
    b = client.v1.balance.retrieve(options=as_account(acct.id))
    assert_shape("balance", raw(b))
    assert b.available[0].amount == 0 and b.pending[0].amount == 0 and b.available[0].currency == "usd"
    assert client.v1.balance_transactions.list(options=as_account(acct.id)).data == []
    # the platform's transactions are not visible as the connected account
    platform_txn = client.v1.balance_transactions.list(params={"limit": 1}).data
    if platform_txn:
        with pytest.raises(stripe.InvalidRequestError) as e:
            client.v1.balance_transactions.retrieve(platform_txn[0].id, options=as_account(acct.id))
        assert e.value.http_status == 404 and e.value.code == "resource_missing"
