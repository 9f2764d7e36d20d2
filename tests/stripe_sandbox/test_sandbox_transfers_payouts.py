"""Separate charges and transfers, transfer reversals and connected-account payouts through the official SDK."""
from __future__ import annotations

import pytest
import stripe

from tests.stripe_sandbox.test_sandbox_connect import (
    as_account, assert_shape, bal, charge, new_account, raw)


@pytest.fixture
def provider(sandbox, client):
    """An onboarded express account with manual payouts (bank 000123456789)."""
    acct = new_account(client)
    sandbox.onboard_account(acct.id)
    client.v1.accounts.update(acct.id, params={"settings": {"payouts": {"schedule": {"interval": "manual"}}}})
    return acct.id


def _events_for(webhooks, obj_id, type_):
    evts = webhooks.wait_for(lambda ev: any(e["type"] == type_ and e["data"]["object"]["id"] == obj_id
                                            for e in ev))
    return [e for e in evts if e["type"] == type_ and e["data"]["object"]["id"] == obj_id]


# -- transfers ---------------------------------------------------------------------------------------------
def test_transfer_with_source_transaction_while_pending(sandbox, client, new_card, provider, webhooks):
    pi = charge(client, new_card, 10000, transfer_group="visit_1")
    ch = pi.latest_charge
    ch_txn = client.v1.balance_transactions.retrieve(ch.balance_transaction)
    assert ch_txn.status == "pending"
    pav0, ppe0 = bal(client)
    tr = client.v1.transfers.create(params={"amount": 7000, "currency": "usd", "destination": provider,
                                            "transfer_group": "visit_1", "source_transaction": ch.id,
                                            "metadata": {"visit": "1"}})
    data = raw(tr)
    assert_shape("transfer", {**data, "source_transaction": None, "transfer_group": None})
    assert tr.object == "transfer" and tr.amount == 7000 and tr.amount_reversed == 0 and tr.reversed is False
    assert tr.destination == provider and tr.source_transaction == ch.id and tr.transfer_group == "visit_1"
    assert tr.destination_payment.startswith("py_") and tr.reversals.data == []

    # the platform's transfer debit and the provider's payment are pending until the charge's funds are
    ptxn = client.v1.balance_transactions.retrieve(tr.balance_transaction)
    assert ptxn.type == "transfer" and ptxn.amount == -7000 and ptxn.source == tr.id
    assert ptxn.available_on == ch_txn.available_on and ptxn.status == "pending"
    pav1, ppe1 = bal(client)
    assert pav1 == pav0 and ppe1 == ppe0 - 7000
    dtx = client.v1.balance_transactions.list(options=as_account(provider)).data
    assert len(dtx) == 1 and dtx[0].type == "payment" and dtx[0].amount == 7000 and dtx[0].status == "pending"
    assert dtx[0].source == tr.destination_payment and dtx[0].available_on == ch_txn.available_on
    assert_shape("balance_transaction", raw(client.v1.balance_transactions.retrieve(
        dtx[0].id, options=as_account(provider))))
    assert bal(client, provider) == (0, 7000)

    # the transfer may not exceed what is left of the charge (net of fees and earlier transfers)
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.create(params={"amount": ch_txn.net - 7000 + 1, "currency": "usd",
                                           "destination": provider, "source_transaction": ch.id})
    assert e.value.http_status == 400 and e.value.code == "balance_insufficient" and e.value.param == "amount"
    tr2 = client.v1.transfers.create(params={"amount": ch_txn.net - 7000, "currency": "usd",
                                             "destination": provider, "source_transaction": ch.id})
    assert tr2.amount == ch_txn.net - 7000

    evt = _events_for(webhooks, tr.id, "transfer.created")[0]
    assert "account" not in evt     # a platform event (connected accounts' events carry `account`)
    assert_shape("transfer", {**evt["data"]["object"], "source_transaction": None, "transfer_group": None})

    listed = client.v1.transfers.list(params={"transfer_group": "visit_1"})
    assert tr.id in [t.id for t in listed.data]
    assert {t.id for t in client.v1.transfers.list(params={"destination": provider}).data} == {tr.id, tr2.id}

    # two days later the provider's money is available
    sandbox.advance_clock(2 * 86400 + 1)
    assert bal(client, provider) == (ch_txn.net, 0)


def test_transfer_without_source_needs_available_balance(client, new_card, provider):
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.create(params={"amount": 10 ** 12, "currency": "usd", "destination": provider})
    err = e.value.json_body["error"]
    assert e.value.http_status == 400 and err["type"] == "invalid_request_error"
    assert err["code"] == "balance_insufficient" and "insufficient available funds" in err["message"]
    ch = charge(client, new_card, 4000, "4000000000000077").latest_charge
    assert ch.status == "succeeded"
    av0, _ = bal(client)
    tr = client.v1.transfers.create(params={"amount": 2500, "currency": "usd", "destination": provider})
    assert tr.source_transaction is None
    assert bal(client)[0] == av0 - 2500
    assert bal(client, provider) == (2500, 0)


def test_transfer_idempotent_retry(client, new_card, provider):
    charge(client, new_card, 3000, "4000000000000077")
    params = {"amount": 1500, "currency": "usd", "destination": provider, "transfer_group": "visit_idem"}
    first = client.v1.transfers.create(params=params, options={"idempotency_key": "tr-visit-idem"})
    again = client.v1.transfers.create(params=params, options={"idempotency_key": "tr-visit-idem"})
    assert again.id == first.id
    assert [t.id for t in client.v1.transfers.list(params={"transfer_group": "visit_idem"}).data] == [first.id]
    assert bal(client, provider) == (1500, 0)


def test_transfer_errors(client, new_card, provider):
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": "acct_nope00000000"})
    assert e.value.code == "resource_missing" and e.value.param == "destination"
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": provider,
                                           "source_transaction": "ch_nope"})
    assert e.value.code == "resource_missing" and e.value.param == "source_transaction"
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.create(params={"currency": "usd", "destination": provider})
    assert e.value.code == "parameter_missing" and e.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.retrieve("tr_nope")
    assert e.value.http_status == 404


def test_transfer_update_and_reversals(sandbox, client, new_card, provider, webhooks):
    charge(client, new_card, 5000, "4000000000000077")
    tr = client.v1.transfers.create(params={"amount": 3000, "currency": "usd", "destination": provider})
    upd = client.v1.transfers.update(tr.id, params={"description": "Visit 7", "metadata": {"visit": "7"}})
    assert upd.description == "Visit 7"
    evt = _events_for(webhooks, tr.id, "transfer.updated")[0]
    assert evt["data"]["previous_attributes"] == {"description": None, "metadata": {}}

    av0, _ = bal(client)
    rev = client.v1.transfers.reversals.create(tr.id, params={"amount": 1000, "metadata": {"why": "partial"}})
    assert_shape("transfer_reversal", raw(rev))
    assert rev.object == "transfer_reversal" and rev.amount == 1000 and rev.transfer == tr.id
    assert rev.destination_payment_refund.startswith("pyr_")
    t = client.v1.transfers.retrieve(tr.id)
    assert t.amount_reversed == 1000 and t.reversed is False and [r.id for r in t.reversals.data] == [rev.id]
    assert bal(client)[0] == av0 + 1000 and bal(client, provider) == (2000, 0)
    rtxn = client.v1.balance_transactions.retrieve(rev.balance_transaction)
    assert rtxn.type == "transfer_refund" and rtxn.amount == 1000

    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.transfers.reversals.create(tr.id, params={"amount": 2001})
    assert e.value.http_status == 400 and e.value.param == "amount"

    full = client.v1.transfers.reversals.create(tr.id)     # the rest
    assert full.amount == 2000
    t = client.v1.transfers.retrieve(tr.id)
    assert t.amount_reversed == 3000 and t.reversed is True and len(t.reversals.data) == 2
    assert bal(client, provider) == (0, 0)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.reversals.create(tr.id)

    assert [r.id for r in client.v1.transfers.reversals.list(tr.id).data] == [full.id, rev.id]
    assert client.v1.transfers.reversals.retrieve(tr.id, rev.id).metadata["why"] == "partial"
    reversed_evts = _events_for(webhooks, tr.id, "transfer.reversed")
    webhooks.wait_for(lambda ev: len([e for e in ev if e["type"] == "transfer.reversed"
                                      and e["data"]["object"]["id"] == tr.id]) == 2)
    last = [e for e in webhooks.events() if e["type"] == "transfer.reversed" and
            e["data"]["object"]["id"] == tr.id][-1]
    assert last["data"]["object"]["reversed"] is True and reversed_evts


# -- payouts ------------------------------------------------------------------------------------------------
def _fund(client, new_card, provider, amount):
    charge(client, new_card, amount + 1000, "4000000000000077")
    return client.v1.transfers.create(params={"amount": amount, "currency": "usd", "destination": provider})


def test_payout_pending_then_paid(sandbox, client, new_card, provider, webhooks):
    acct = client.v1.accounts.retrieve(provider)
    assert acct.settings.payouts.schedule.interval == "manual"
    _fund(client, new_card, provider, 6000)
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.payouts.create(params={"amount": 6001, "currency": "usd"}, options=as_account(provider))
    assert e.value.http_status == 400 and e.value.code == "balance_insufficient"

    po = client.v1.payouts.create(params={"amount": 5000, "currency": "usd", "metadata": {"batch": "1"}},
                                  options=as_account(provider))
    assert_shape("payout", raw(po))
    assert po.status == "pending" and po.automatic is False and po.amount == 5000
    assert po.destination == acct.external_accounts.data[0].id
    assert bal(client, provider) == (1000, 0)
    txn = client.v1.balance_transactions.retrieve(po.balance_transaction, options=as_account(provider))
    assert txn.type == "payout" and txn.amount == -5000 and txn.source == po.id
    swept = client.v1.balance_transactions.list(params={"payout": po.id}, options=as_account(provider)).data
    assert {t.type for t in swept} == {"payment", "payout"}
    assert [t.id for t in client.v1.balance_transactions.list(
        params={"type": "payout"}, options=as_account(provider)).data] == [txn.id]
    # payouts belong to their account
    with pytest.raises(stripe.InvalidRequestError) as e:
        client.v1.payouts.retrieve(po.id)
    assert e.value.http_status == 404

    created = _events_for(webhooks, po.id, "payout.created")[0]
    assert created["account"] == provider
    assert_shape("payout", created["data"]["object"])

    sandbox.advance_clock(60)
    paid = client.v1.payouts.retrieve(po.id, options=as_account(provider))
    assert paid.status == "paid" and paid.failure_code is None
    evt = _events_for(webhooks, po.id, "payout.paid")[0]
    assert evt["account"] == provider and evt["data"]["object"]["status"] == "paid"

    upd = client.v1.payouts.update(po.id, params={"metadata": {"batch": "2"}}, options=as_account(provider))
    assert upd.metadata["batch"] == "2"
    evt = _events_for(webhooks, po.id, "payout.updated")[0]
    assert evt["data"]["previous_attributes"] == {"metadata": {"batch": "1"}} and evt["account"] == provider
    listed = client.v1.payouts.list(params={"status": "paid"}, options=as_account(provider))
    assert [p.id for p in listed.data] == [po.id]


@pytest.mark.parametrize("number,code", [("000111111116", "no_account"), ("000111111113", "account_closed")])
def test_payout_to_failing_test_bank_account(sandbox, client, new_card, webhooks, number, code):
    acct = new_account(client)
    sandbox.onboard_account(acct.id, account_number=number)
    _fund(client, new_card, acct.id, 3000)
    po = client.v1.payouts.create(params={"amount": 3000, "currency": "usd"}, options=as_account(acct.id))
    assert po.status == "pending" and bal(client, acct.id) == (0, 0)
    sandbox.advance_clock(60)
    failed = client.v1.payouts.retrieve(po.id, options=as_account(acct.id))
    assert failed.status == "failed" and failed.failure_code == code and failed.failure_message
    back = client.v1.balance_transactions.retrieve(failed.failure_balance_transaction, options=as_account(acct.id))
    assert back.type == "payout_failure" and back.amount == 3000
    assert bal(client, acct.id) == (3000, 0)      # the money is back
    evt = _events_for(webhooks, po.id, "payout.failed")[0]
    assert evt["account"] == acct.id and evt["data"]["object"]["failure_code"] == code


def test_payout_real_time_later(sandbox, client, new_card, provider):
    """Without advancing the clock, a payout lands after the "later" delay in real time."""
    import time
    _fund(client, new_card, provider, 1000)
    before = sandbox.admin("GET", "later")["later_seconds"]
    sandbox.set_later(0)
    try:
        po = client.v1.payouts.create(params={"amount": 1000, "currency": "usd"}, options=as_account(provider))
        deadline = time.time() + 5
        while client.v1.payouts.retrieve(po.id, options=as_account(provider)).status != "paid":
            assert time.time() < deadline, "payout never paid"
            time.sleep(0.05)
    finally:
        sandbox.set_later(before)


def test_payout_needs_a_known_account(client):
    with pytest.raises(stripe.PermissionError) as e:
        client.v1.payouts.create(params={"amount": 100, "currency": "usd"}, options=as_account("acct_nope0000000"))
    assert e.value.http_status == 403 and e.value.json_body["error"]["code"] == "account_invalid"
