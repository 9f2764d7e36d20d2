"""Refund timing through the official SDK: Stripe's refund test cards (4000000000007726 pending -> succeeded,
4000000000005126 succeeded -> failed), refund cancel, and reverse_transfer / refund_application_fee on
charges that are not destination charges.  "Later" comes from advancing the sandbox clock, never sleeping."""
from __future__ import annotations

import time

import pytest
import stripe

from tests.helpers.stripe_shapes import assert_shape, raw


# balance_transaction keys and value types, from fixtures3.json's balance_transaction (derived once)
BALANCE_TRANSACTION = {"amount": "integer", "available_on": "integer", "balance_type": "string",
                       "created": "integer", "currency": "string", "description": "string", "exchange_rate": "null",
                       "fee": "integer", "fee_details": "array", "id": "string", "net": "integer",
                       "object": "string", "reporting_category": "string", "source": "string", "status": "string",
                       "type": "string"}
BALANCE_TRANSACTION_NULLABLE = {"description"}
LATER = 60      # advancing the sandbox clock this far brings on anything due "later" (default 3 s)


def pay(client, new_card, number: str, amount: int = 2000):
    pm = new_card(number)
    pi = client.v1.payment_intents.create(params={"amount": amount, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True})
    assert pi.status == "succeeded"
    return pi


def of_type(events: list[dict], type_: str, obj_id: str) -> list[dict]:
    return [e for e in events if e["type"] == type_ and e["data"]["object"]["id"] == obj_id]


def test_plain_card_refund_succeeds_at_once(client, sandbox, new_card, webhooks):
    pi = pay(client, new_card, "4242424242424242")
    re = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
    assert re.status == "succeeded"
    assert_shape("refund", raw(re))
    evts = webhooks.wait_for(lambda es: of_type(es, "refund.created", re.id))
    assert of_type(evts, "refund.created", re.id)[0]["data"]["object"]["status"] == "succeeded"
    sandbox.advance_clock(LATER)
    assert client.v1.refunds.retrieve(re.id).status == "succeeded"


def test_pending_refund_succeeds_later(client, sandbox, new_card, webhooks):
    pi = pay(client, new_card, "4000000000007726")
    re = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert re.status == "pending"
    assert re.amount == 2000 and re.balance_transaction
    assert_shape("refund", raw(re))
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 2000 and charge.refunded is True   # a pending refund counts already
    # no more than the charge can be refunded while it is pending
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert ei.value.code == "charge_already_refunded"

    sandbox.advance_clock(LATER)
    done = client.v1.refunds.retrieve(re.id)
    assert done.status == "succeeded"
    assert_shape("refund", raw(done))
    evts = webhooks.wait_for(lambda es: of_type(es, "refund.updated", re.id)
                             and of_type(es, "charge.refund.updated", re.id))
    created = of_type(evts, "refund.created", re.id)[0]
    assert created["data"]["object"]["status"] == "pending"
    for type_ in ("refund.updated", "charge.refund.updated"):
        (evt,) = of_type(evts, type_, re.id)
        assert evt["data"]["object"]["status"] == "succeeded"
        assert evt["data"]["previous_attributes"]["status"] == "pending"
        assert_shape("refund", evt["data"]["object"])
        assert_shape("event", evt)
    assert not of_type(evts, "refund.failed", re.id)


def test_refund_fails_later_and_the_money_comes_back(client, sandbox, new_card, webhooks):
    pi = pay(client, new_card, "4000000000005126", amount=3000)
    re = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1200,
                                          "reason": "requested_by_customer"})
    assert re.status == "succeeded"
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1200

    sandbox.advance_clock(LATER)
    failed = client.v1.refunds.retrieve(re.id)
    assert failed.status == "failed"
    assert failed.failure_reason == "expired_or_canceled_card"
    assert_shape("refund", raw(failed))
    txn = client.v1.balance_transactions.retrieve(failed.failure_balance_transaction)
    assert txn.type == "refund_failure" and txn.reporting_category == "refund_failure"
    assert txn.amount == 1200 and txn.net == 1200 and txn.source == re.id   # the money returns to the balance
    assert_shape("balance_transaction", raw(txn), BALANCE_TRANSACTION, BALANCE_TRANSACTION_NULLABLE)
    original = client.v1.balance_transactions.retrieve(re.balance_transaction)
    assert original.amount == -1200 and original.type == "refund"

    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 0 and charge.refunded is False
    assert [r.status for r in charge.refunds.data] == ["failed"]

    evts = webhooks.wait_for(lambda es: of_type(es, "refund.failed", re.id)
                             and of_type(es, "refund.updated", re.id) and of_type(es, "charge.refund.updated", re.id))
    for type_ in ("refund.failed", "refund.updated", "charge.refund.updated"):
        (evt,) = of_type(evts, type_, re.id)
        obj = evt["data"]["object"]
        assert obj["status"] == "failed" and obj["failure_reason"] == "expired_or_canceled_card"
        assert obj["failure_balance_transaction"] == txn.id
        assert_shape("refund", obj)
    prev = of_type(evts, "refund.updated", re.id)[0]["data"]["previous_attributes"]
    assert prev["status"] == "succeeded" and prev["failure_reason"] is None

    # the whole charge can be refunded again (and, with this card, fails again later)
    again = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert again.amount == 3000 and again.status == "succeeded"


def test_refund_settles_in_real_time(client, sandbox, new_card):
    """Without advancing the clock, "later" comes after app.later_seconds of real time."""
    before = sandbox.admin("GET", "later")["later_seconds"]
    sandbox.set_later(0.5)
    try:
        pi = pay(client, new_card, "4000000000007726")
        re = client.v1.refunds.create(params={"payment_intent": pi.id})
        assert re.status == "pending"
        deadline = time.time() + 10
        while client.v1.refunds.retrieve(re.id).status == "pending":
            assert time.time() < deadline, "the pending refund never succeeded"
            time.sleep(0.2)
        assert client.v1.refunds.retrieve(re.id).status == "succeeded"
    finally:
        sandbox.set_later(before)


def test_cancel_only_requires_action_refunds(client, sandbox, new_card):
    pi = pay(client, new_card, "4242424242424242")
    re = client.v1.refunds.create(params={"payment_intent": pi.id})
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.cancel(re.id)
    assert ei.value.http_status == 400
    err = ei.value.json_body["error"]
    assert err["type"] == "invalid_request_error"
    assert "requires_action" in err["message"] and "succeeded" in err["message"]
    assert client.v1.refunds.retrieve(re.id).status == "succeeded"
    # a pending card refund cannot be canceled either
    pending = client.v1.refunds.create(params={"payment_intent": pay(client, new_card, "4000000000007726").id})
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.cancel(pending.id)
    assert ei.value.http_status == 400 and "pending" in ei.value.json_body["error"]["message"]
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.cancel("re_doesnotexist")
    assert ei.value.http_status == 404 and ei.value.code == "resource_missing"


@pytest.mark.parametrize("param", ["reverse_transfer", "refund_application_fee"])
def test_connect_refund_options_refused_on_separate_charges(client, new_card, param):
    pi = pay(client, new_card, "4242424242424242")
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id, param: True})
    assert ei.value.http_status == 400
    err = ei.value.json_body["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert param in err["message"]
    assert client.v1.refunds.list(params={"payment_intent": pi.id}).data == []   # nothing refunded
    re = client.v1.refunds.create(params={"payment_intent": pi.id, param: False})
    assert re.status == "succeeded"


def test_reverse_transfer_accepted_on_a_destination_charge(client, new_card):
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "payment_method": pm.id, "confirm": True,
        "application_fee_amount": 200, "transfer_data": {"destination": "acct_1DestinationTest"}})
    assert pi.status == "succeeded"
    re = client.v1.refunds.create(params={"payment_intent": pi.id, "reverse_transfer": True,
                                          "refund_application_fee": True})
    assert re.status == "succeeded"
