"""Issue 13, off-session and saved cards: failed charges on every decline, 4000002760003184 off- then
on-session, 4000000000000341, detached PaymentMethods, card ageing and the admin card-state routes."""
from __future__ import annotations

import calendar
import datetime

import pytest
import stripe

from devtools.stripe_sandbox.process import SandboxError
from tests.helpers.stripe_shapes import NESTED, assert_shape, raw

DETACHED_MSG = ("The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
                "shared with a connected account without Customer attachment, or was detached from a Customer. "
                "It may not be used again. To use a PaymentMethod multiple times, you must attach it to a "
                "Customer first.")


def saved_card(client, number: str, **card):
    """A customer with the card attached (a saved card)."""
    cus = client.v1.customers.create(params={"email": f"saved-{number[-4:]}@example.com"})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": number, "exp_month": card.get("exp_month", 12), "exp_year": card.get("exp_year", 2034),
        "cvc": "123"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    return cus, pm


def charge_off_session(client, cus, pm, amount=2500):
    return client.v1.payment_intents.create(params={
        "amount": amount, "currency": "usd", "customer": cus.id, "payment_method": pm.id,
        "off_session": True, "confirm": True})


def assert_failed_charge_error(client, exc, *, code, decline_code, pm_id, amount):
    """The 402 envelope of a failed confirmation and the failed Charge it names; returns (pi dict, charge)."""
    assert isinstance(exc, stripe.CardError)
    assert exc.http_status == 402
    err = exc.error
    body = exc.json_body["error"]
    assert body["type"] == "card_error"
    assert err.code == code and body["code"] == code
    assert body.get("decline_code") == decline_code
    assert body["doc_url"].endswith(code.replace("_", "-"))
    assert isinstance(err.charge, str) and err.charge.startswith("ch_")
    assert body["payment_method"]["id"] == pm_id
    pi = body["payment_intent"]
    assert_shape("payment_intent", pi)
    assert pi["status"] == "requires_payment_method"
    assert pi["payment_method"] is None and pi["next_action"] is None
    assert pi["latest_charge"] == err.charge
    lpe = pi["last_payment_error"]
    assert lpe["type"] == "card_error" and lpe["code"] == code
    assert lpe.get("decline_code") == decline_code
    assert lpe["charge"] == err.charge
    assert lpe["payment_method"]["id"] == pm_id
    ch = client.v1.charges.retrieve(err.charge)
    ch_raw = raw(ch)
    assert_shape("charge", ch_raw)
    assert_shape("charge.outcome", ch_raw["outcome"], NESTED["charge.outcome"])
    assert ch.status == "failed" and ch.captured is False and ch.paid is False
    assert ch.amount == amount and ch.amount_captured == 0 and ch.balance_transaction is None
    assert ch.failure_code == code and ch.failure_message == body["message"]
    assert ch.payment_intent == pi["id"] and ch.payment_method == pm_id
    out = ch.outcome
    assert out.network_status == "declined_by_network"
    assert out.type == "issuer_declined"
    assert out.reason == (decline_code or code)
    assert out.risk_level == "normal"
    if (decline_code or code) == "generic_decline":
        assert out.seller_message == "The bank did not return any further details with this decline."
    else:
        assert out.seller_message == f"The bank returned the decline code `{decline_code or code}`."
    listed = client.v1.charges.list(params={"payment_intent": pi["id"]})
    assert err.charge in [c.id for c in listed.data]
    assert client.v1.payment_intents.retrieve(pi["id"]).latest_charge == err.charge
    return pi, ch


# -- a failed confirmation creates a failed Charge ----------------------------------------------------------

@pytest.mark.parametrize("number,code,decline_code,off_session", [
    ("4000000000000002", "card_declined", "generic_decline", False),
    ("4000000000009995", "card_declined", "insufficient_funds", True),
    ("4000000000009987", "card_declined", "lost_card", False),
    ("4000000000000069", "expired_card", None, True),
    ("4000000000000127", "incorrect_cvc", None, False),
    ("4000000000000119", "processing_error", None, False),
])
def test_every_decline_creates_a_failed_charge(client, new_card, number, code, decline_code, off_session):
    pm = new_card(number)
    params = {"amount": 1999, "currency": "usd", "payment_method": pm.id, "confirm": True}
    if off_session:
        params["off_session"] = True
    with pytest.raises(stripe.CardError) as ei:
        client.v1.payment_intents.create(params=params)
    assert_failed_charge_error(client, ei.value, code=code, decline_code=decline_code, pm_id=pm.id, amount=1999)


def test_decline_after_3ds_creates_a_failed_charge(client, sandbox, new_card):
    pm = new_card("4000008400001629")
    pi = client.v1.payment_intents.create(params={"amount": 1500, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True})
    assert pi.status == "requires_action"
    done = sandbox.complete_3ds(pi.id)
    assert done["status"] == "requires_payment_method"
    ch = client.v1.charges.retrieve(done["latest_charge"])
    assert ch.status == "failed" and ch.failure_code == "card_declined"
    assert done["last_payment_error"]["charge"] == ch.id
    assert ch.payment_method_details.card.three_d_secure.result == "authenticated"


def test_failed_charge_events(client, sandbox, new_card, webhooks):
    pm = new_card("4000000000009995")
    with pytest.raises(stripe.CardError) as ei:
        client.v1.payment_intents.create(params={"amount": 2100, "currency": "usd", "payment_method": pm.id,
                                                 "confirm": True})
    pi_id = ei.value.error.payment_intent["id"]
    ch_id = ei.value.error.charge

    def mine(evts):
        return {e["type"]: e for e in evts if e["data"]["object"]["id"] in (pi_id, ch_id)}
    evts = mine(webhooks.wait_for(lambda es: {"charge.failed", "payment_intent.payment_failed"} <= set(mine(es))))
    ch_evt, pi_evt = evts["charge.failed"], evts["payment_intent.payment_failed"]
    for e in (ch_evt, pi_evt):
        assert_shape("event", e)
    ch = ch_evt["data"]["object"]
    assert_shape("charge", ch)
    assert_shape("charge.outcome", ch["outcome"], NESTED["charge.outcome"])
    assert ch["id"] == ch_id and ch["status"] == "failed" and ch["captured"] is False
    assert ch["failure_code"] == "card_declined" and ch["outcome"]["reason"] == "insufficient_funds"
    pi = pi_evt["data"]["object"]
    assert_shape("payment_intent", pi)
    assert pi["status"] == "requires_payment_method" and pi["latest_charge"] == ch_id
    assert pi["last_payment_error"]["decline_code"] == "insufficient_funds"
    assert pi["last_payment_error"]["charge"] == ch_id
    # the same objects through the events API
    listed = client.v1.events.list(params={"type": "charge.failed", "limit": 5})
    assert ch_id in [e.data.object["id"] for e in listed.data]


# -- 4000002760003184: off-session authentication_required, then on-session 3DS ---------------------------

def test_authentication_required_off_session_then_on_session(client, sandbox):
    cus = client.v1.customers.create(params={"email": "3184@example.com"})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    # saved through a SetupIntent (3DS on set-up), as the portal saves cards
    si = client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id, "confirm": True,
                                                "usage": "off_session"})
    assert si.status == "requires_action"
    assert sandbox.complete_3ds(si.id)["status"] == "succeeded"
    with pytest.raises(stripe.CardError) as ei:
        charge_off_session(client, cus, pm, amount=4200)
    e = ei.value
    assert e.error.decline_code == "authentication_required"
    assert e.user_message == "Your card was declined. This transaction requires authentication."
    pi, failed = assert_failed_charge_error(client, e, code="authentication_required",
                                            decline_code="authentication_required", pm_id=pm.id, amount=4200)
    assert pi["customer"] == cus.id
    # the customer comes back on-session and confirms the same intent with the same card
    again = client.v1.payment_intents.confirm(pi["id"], params={"payment_method": pm.id,
                                                                "return_url": "https://portal.example/r"})
    assert again.status == "requires_action"
    assert again.next_action.type == "use_stripe_sdk"
    assert again.last_payment_error is None
    done = sandbox.complete_3ds(pi["id"])
    assert done["status"] == "succeeded" and done["amount_received"] == 4200
    assert done["latest_charge"] != failed.id
    charges = client.v1.charges.list(params={"payment_intent": pi["id"]})
    assert sorted(c.status for c in charges.data) == ["failed", "succeeded"]
    # off-session again later: still authentication_required (this card always needs it)
    with pytest.raises(stripe.CardError) as ei2:
        charge_off_session(client, cus, pm)
    assert ei2.value.code == "authentication_required" and ei2.value.error.charge


def test_error_on_requires_action_fails_like_off_session(client, new_card):
    pm = new_card("4000002500003155")
    with pytest.raises(stripe.CardError) as ei:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": pm.id,
                                                 "confirm": True, "error_on_requires_action": True})
    assert_failed_charge_error(client, ei.value, code="authentication_required",
                               decline_code="authentication_required", pm_id=pm.id, amount=1000)


# -- 4000000000000341: attaches fine, every charge fails -------------------------------------------------

def test_attach_then_every_charge_declined(client, sandbox):
    cus, pm = saved_card(client, "4000000000000341")
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    si = client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id, "confirm": True})
    assert si.status == "succeeded"
    for off in (True, False):
        params = {"amount": 3300, "currency": "usd", "customer": cus.id, "payment_method": pm.id, "confirm": True}
        if off:
            params["off_session"] = True
        with pytest.raises(stripe.CardError) as ei:
            client.v1.payment_intents.create(params=params)
        assert_failed_charge_error(client, ei.value, code="card_declined", decline_code="generic_decline",
                                   pm_id=pm.id, amount=3300)
    failed = client.v1.charges.list(params={"customer": cus.id})
    assert [c.status for c in failed.data] == ["failed", "failed"]


# -- detached PaymentMethods ---------------------------------------------------------------------------------

def test_detached_payment_method_cannot_be_used_again(client):
    cus, pm = saved_card(client, "4242424242424242")
    assert charge_off_session(client, cus, pm).status == "succeeded"
    client.v1.payment_methods.detach(pm.id)
    for params in ({"customer": cus.id, "off_session": True, "confirm": True},
                   {"customer": cus.id, "confirm": True},
                   {"confirm": True}):
        with pytest.raises(stripe.InvalidRequestError) as ei:
            client.v1.payment_intents.create(params={"amount": 1200, "currency": "usd", "payment_method": pm.id,
                                                     **params})
        e = ei.value
        assert e.http_status == 400
        assert e.error.type == "invalid_request_error"
        assert e.error.message == DETACHED_MSG
        assert e.error.param == "payment_method"
    # confirming an existing intent with it
    pi = client.v1.payment_intents.create(params={"amount": 1200, "currency": "usd", "customer": cus.id})
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id, "off_session": True})
    assert ei.value.error.message == DETACHED_MSG and ei.value.error.param == "payment_method"
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"
    # nor attached again or set up
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    assert "detached from a Customer" in ei.value.error.message
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id, "confirm": True})
    assert client.v1.charges.list(params={"customer": cus.id}).data[0].status == "succeeded"


def test_intent_holding_a_detached_payment_method_cannot_be_confirmed(client):
    cus, pm = saved_card(client, "4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 1300, "currency": "usd", "customer": cus.id,
                                                  "payment_method": pm.id})
    assert pi.status == "requires_confirmation"
    client.v1.payment_methods.detach(pm.id)
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.confirm(pi.id, params={"off_session": True})
    assert ei.value.error.message == DETACHED_MSG


# -- card ageing -----------------------------------------------------------------------------------------------

def test_saved_card_expires_with_the_sandbox_clock(client, sandbox):
    today = datetime.datetime.fromtimestamp(sandbox.now(), datetime.timezone.utc)
    cus, pm = saved_card(client, "4242424242424242", exp_month=today.month, exp_year=today.year)
    # valid through the end of its expiry month
    last_day = calendar.monthrange(today.year, today.month)[1]
    end_of_month = datetime.datetime(today.year, today.month, last_day, 23, 59, 0, tzinfo=datetime.timezone.utc)
    sandbox.advance_clock(max(0, int(end_of_month.timestamp()) - sandbox.now() - 60))
    assert charge_off_session(client, cus, pm).status == "succeeded"
    # the deposit was taken; the month ends before the balance is charged
    sandbox.advance_clock(int(end_of_month.timestamp()) + 120 - sandbox.now())
    with pytest.raises(stripe.CardError) as ei:
        charge_off_session(client, cus, pm, amount=7700)
    assert ei.value.error.decline_code is None
    assert ei.value.user_message == "Your card has expired."
    assert_failed_charge_error(client, ei.value, code="expired_card", decline_code=None, pm_id=pm.id, amount=7700)
    # on-session too
    with pytest.raises(stripe.CardError) as ei:
        client.v1.payment_intents.create(params={"amount": 800, "currency": "usd", "customer": cus.id,
                                                 "payment_method": pm.id, "confirm": True})
    assert ei.value.code == "expired_card" and ei.value.error.charge
    # the customer updates the expiry date: charges work again
    client.v1.payment_methods.update(pm.id, params={"card": {"exp_month": 12, "exp_year": today.year + 3}})
    assert charge_off_session(client, cus, pm).status == "succeeded"


def test_admin_marks_saved_card_expired(client, sandbox):
    cus, pm = saved_card(client, "4242424242424242")
    assert charge_off_session(client, cus, pm).status == "succeeded"
    marked = sandbox.expire_card(pm.id)
    assert marked["id"] == pm.id and "_sandbox" not in marked
    with pytest.raises(stripe.CardError) as ei:
        charge_off_session(client, cus, pm, amount=5100)
    assert_failed_charge_error(client, ei.value, code="expired_card", decline_code=None, pm_id=pm.id, amount=5100)
    with pytest.raises(stripe.CardError) as ei:
        client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id, "confirm": True})
    assert ei.value.code == "expired_card"


def test_admin_marks_saved_card_lost(client, sandbox):
    cus, pm = saved_card(client, "5555555555554444")
    assert charge_off_session(client, cus, pm).status == "succeeded"
    sandbox.mark_card_lost(pm.id)
    for off in (True, False):
        params = {"amount": 2600, "currency": "usd", "customer": cus.id, "payment_method": pm.id, "confirm": True}
        if off:
            params["off_session"] = True
        with pytest.raises(stripe.CardError) as ei:
            client.v1.payment_intents.create(params=params)
        assert_failed_charge_error(client, ei.value, code="card_declined", decline_code="lost_card", pm_id=pm.id,
                                   amount=2600)


def test_admin_card_routes_unknown_payment_method(sandbox):
    with pytest.raises(SandboxError) as ei:
        sandbox.expire_card("pm_doesnotexist")
    assert "404" in str(ei.value)
    with pytest.raises(SandboxError):
        sandbox.mark_card_lost("pm_doesnotexist")
