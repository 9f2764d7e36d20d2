"""Disputes through the official SDK: 4000000000000259 opens a fraudulent dispute shortly after the charge;
evidence, submission, winning_evidence / losing_evidence, close, past due; refunds of disputed charges.
"Later" comes from advancing the sandbox clock, never sleeping."""
from __future__ import annotations

import pytest
import stripe

from tests.stripe_sandbox.test_sandbox_refund_timing import (BALANCE_TRANSACTION, BALANCE_TRANSACTION_NULLABLE,
                                                             LATER, assert_shape, of_type, pay, raw)

# dispute keys and value types, from fixtures3.json's dispute (derived once)
DISPUTE = {"amount": "integer", "balance_transactions": "array", "charge": "string", "created": "integer",
           "currency": "string", "enhanced_eligibility_types": "array", "evidence": "object",
           "evidence_details": "object", "id": "string", "is_charge_refundable": "boolean", "livemode": "boolean",
           "metadata": "object", "object": "string", "payment_intent": "null", "payment_method_details": "object",
           "reason": "string", "status": "string"}
DISPUTE_NULLABLE = {"payment_method_details"}
EVIDENCE_DETAILS = {"due_by": "integer", "enhanced_eligibility": "object", "has_evidence": "boolean",
                    "past_due": "boolean", "submission_count": "integer"}


def assert_dispute(obj: dict) -> None:
    assert_shape("dispute", obj, DISPUTE, DISPUTE_NULLABLE)
    assert_shape("dispute.evidence_details", obj["evidence_details"], EVIDENCE_DETAILS, set())
    for txn in obj["balance_transactions"]:
        assert_shape("balance_transaction", txn, BALANCE_TRANSACTION, BALANCE_TRANSACTION_NULLABLE)


def disputed_payment(client, sandbox, new_card, amount: int = 4000):
    pi = pay(client, new_card, "4000000000000259", amount=amount)
    sandbox.advance_clock(LATER)
    (dp,) = client.v1.disputes.list(params={"charge": pi.latest_charge}).data
    return pi, dp


def test_dispute_card_opens_a_fraudulent_dispute_later(client, sandbox, new_card, webhooks):
    pi = pay(client, new_card, "4000000000000259", amount=4000)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "succeeded" and charge.disputed is False
    assert client.v1.disputes.list(params={"charge": charge.id}).data == []

    now = sandbox.advance_clock(LATER)
    (dp,) = client.v1.disputes.list(params={"charge": charge.id}).data
    assert_dispute(raw(client.v1.disputes.retrieve(dp.id)))
    assert dp.id.startswith("du_") and dp.object == "dispute"
    assert dp.status == "needs_response" and dp.reason == "fraudulent"
    assert dp.amount == 4000 and dp.currency == "usd" and dp.payment_intent == pi.id
    assert dp.is_charge_refundable is False
    assert now + 7 * 86400 <= dp.evidence_details.due_by <= now + 21 * 86400
    assert dp.evidence_details.has_evidence is False and dp.evidence_details.submission_count == 0
    (txn,) = dp.balance_transactions
    assert (txn.amount, txn.fee, txn.net) == (-4000, 1500, -5500)
    assert txn.type == "adjustment" and txn.reporting_category == "dispute" and txn.source == dp.id
    assert txn.fee_details[0].description == "Dispute fee"
    assert client.v1.balance_transactions.retrieve(txn.id).net == -5500

    charge = client.v1.charges.retrieve(charge.id)
    assert charge.disputed is True and charge["dispute"] == dp.id
    assert_shape("charge", raw(charge))
    assert [d.id for d in client.v1.disputes.list(params={"payment_intent": pi.id}).data] == [dp.id]
    assert dp.id in [d.id for d in client.v1.disputes.list(params={"limit": 100}).data]

    evts = webhooks.wait_for(lambda es: of_type(es, "charge.dispute.created", dp.id)
                             and of_type(es, "charge.dispute.funds_withdrawn", dp.id))
    for type_ in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
        (evt,) = of_type(evts, type_, dp.id)
        assert_shape("event", evt)
        assert_dispute(evt["data"]["object"])
        assert evt["data"]["object"]["status"] == "needs_response"


def test_refund_refused_while_disputed(client, sandbox, new_card):
    pi, dp = disputed_payment(client, sandbox, new_card)
    for params in ({"payment_intent": pi.id}, {"charge": pi.latest_charge, "amount": 100}):
        with pytest.raises(stripe.InvalidRequestError) as ei:
            client.v1.refunds.create(params=params)
        assert ei.value.http_status == 400 and ei.value.code == "charge_disputed"
        err = ei.value.json_body["error"]
        assert err["type"] == "invalid_request_error"
        assert err["message"] == f"Charge {pi.latest_charge} has been charged back; cannot issue a refund."
    assert client.v1.refunds.list(params={"payment_intent": pi.id}).data == []


def test_winning_evidence_wins_and_reinstates_funds(client, sandbox, new_card, webhooks):
    pi, dp = disputed_payment(client, sandbox, new_card, amount=2500)
    staged = client.v1.disputes.update(dp.id, params={
        "evidence": {"customer_name": "Pat Patient", "product_description": "Clinic visit"},
        "metadata": {"case": "42"}, "submit": False})
    assert staged.status == "needs_response"
    assert staged.evidence.customer_name == "Pat Patient" and staged.evidence_details.has_evidence is True
    assert staged.evidence_details.submission_count == 0 and staged.metadata["case"] == "42"

    submitted = client.v1.disputes.update(dp.id, params={"evidence": {"uncategorized_text": "winning_evidence"},
                                                         "submit": True})
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1
    assert submitted.evidence.customer_name == "Pat Patient"   # earlier staged evidence is kept
    assert_dispute(raw(submitted))
    with pytest.raises(stripe.InvalidRequestError) as ei:   # still open: no refund
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert ei.value.code == "charge_disputed"

    sandbox.advance_clock(LATER)
    won = client.v1.disputes.retrieve(dp.id)
    assert won.status == "won"
    assert [t.amount for t in won.balance_transactions] == [-2500, 2500]
    back = won.balance_transactions[1]
    assert back.type == "adjustment" and back.reporting_category == "dispute_reversal" and back.net == 2500
    assert_dispute(raw(won))
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True

    evts = webhooks.wait_for(lambda es: of_type(es, "charge.dispute.closed", dp.id)
                             and of_type(es, "charge.dispute.funds_reinstated", dp.id))
    updates = of_type(evts, "charge.dispute.updated", dp.id)
    assert [e["data"]["object"]["status"] for e in updates] == ["needs_response", "under_review"]
    assert updates[1]["data"]["previous_attributes"]["status"] == "needs_response"
    (closed,) = of_type(evts, "charge.dispute.closed", dp.id)
    assert closed["data"]["object"]["status"] == "won"
    assert_dispute(closed["data"]["object"])
    (reinstated,) = of_type(evts, "charge.dispute.funds_reinstated", dp.id)
    assert len(reinstated["data"]["object"]["balance_transactions"]) == 2


def test_losing_evidence_loses_and_the_charge_cannot_be_refunded(client, sandbox, new_card, webhooks):
    pi, dp = disputed_payment(client, sandbox, new_card)
    submitted = client.v1.disputes.update(dp.id, params={"evidence": {"uncategorized_text": "losing_evidence"}})
    assert submitted.status == "under_review"   # submit defaults to true
    sandbox.advance_clock(LATER)
    lost = client.v1.disputes.retrieve(dp.id)
    assert lost.status == "lost" and len(lost.balance_transactions) == 1
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert ei.value.code == "charge_disputed"
    evts = webhooks.wait_for(lambda es: of_type(es, "charge.dispute.closed", dp.id))
    assert of_type(evts, "charge.dispute.closed", dp.id)[0]["data"]["object"]["status"] == "lost"
    assert not of_type(evts, "charge.dispute.funds_reinstated", dp.id)


def test_close_accepts_the_dispute_as_lost(client, sandbox, new_card, webhooks):
    pi, dp = disputed_payment(client, sandbox, new_card)
    closed = client.v1.disputes.close(dp.id)
    assert closed.status == "lost"
    assert_dispute(raw(closed))
    evts = webhooks.wait_for(lambda es: of_type(es, "charge.dispute.closed", dp.id))
    (evt,) = of_type(evts, "charge.dispute.closed", dp.id)
    assert evt["data"]["previous_attributes"]["status"] == "needs_response"
    # closed for good: no second close, no evidence; metadata can still change
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.disputes.close(dp.id)
    assert ei.value.http_status == 400 and ei.value.json_body["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.disputes.update(dp.id, params={"evidence": {"uncategorized_text": "winning_evidence"}})
    assert ei.value.http_status == 400
    assert client.v1.disputes.update(dp.id, params={"metadata": {"note": "accepted"}}).metadata["note"] == "accepted"
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert ei.value.code == "charge_disputed"


def test_unanswered_dispute_is_lost_when_past_due(client, sandbox, new_card):
    _, dp = disputed_payment(client, sandbox, new_card)
    sandbox.advance_clock(dp.evidence_details.due_by - sandbox.now() + 60)
    lost = client.v1.disputes.retrieve(dp.id)
    assert lost.status == "lost" and lost.evidence_details.past_due is True


def test_dispute_errors(client, sandbox, new_card):
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.disputes.retrieve("du_doesnotexist")
    assert ei.value.http_status == 404 and ei.value.code == "resource_missing"
    assert ei.value.json_body["error"]["message"] == "No such dispute: 'du_doesnotexist'"
    _, dp = disputed_payment(client, sandbox, new_card)
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.disputes.update(dp.id, params={"evidence": {"not_a_field": "x"}})
    assert ei.value.http_status == 400 and ei.value.json_body["error"]["param"] == "evidence[not_a_field]"


def test_ordinary_cards_are_not_disputed(client, sandbox, new_card):
    pi = pay(client, new_card, "4242424242424242")
    sandbox.advance_clock(LATER)
    assert client.v1.disputes.list(params={"charge": pi.latest_charge}).data == []
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is False


def test_fully_refunded_charge_is_not_disputed(client, sandbox, new_card):
    pi = pay(client, new_card, "4000000000000259")
    client.v1.refunds.create(params={"payment_intent": pi.id})   # refunded before the dispute would open
    sandbox.advance_clock(LATER)
    assert client.v1.disputes.list(params={"charge": pi.latest_charge}).data == []


def test_manual_capture_disputed_after_capture(client, sandbox, new_card):
    pm = new_card("4000000000000259")
    pi = client.v1.payment_intents.create(params={"amount": 3000, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True, "capture_method": "manual"})
    sandbox.advance_clock(LATER)
    assert client.v1.disputes.list(params={"charge": pi.latest_charge}).data == []
    client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 2000})
    sandbox.advance_clock(LATER)
    (dp,) = client.v1.disputes.list(params={"charge": pi.latest_charge}).data
    assert dp.amount == 2000
