"""Webhook signing and delivery modes; API fault injection."""
from __future__ import annotations

import time

import pytest
import stripe

from devtools.stripe_sandbox.webhooks import sign


def _pi(client, **extra):
    return client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", **extra})


def test_webhook_signature_verifies(sandbox, client, webhooks, new_card):
    pm = new_card("4242424242424242")
    pi = _pi(client, payment_method=pm.id, confirm=True)
    rx = webhooks.wait_for(lambda evts: any(e["type"] == "payment_intent.succeeded" and
                                            e["data"]["object"]["id"] == pi.id for e in evts))
    req = next(r for r in webhooks.requests if b"payment_intent.succeeded" in r["body"])
    header = req["headers"]["Stripe-Signature"]
    event = stripe.Webhook.construct_event(req["body"], header, sandbox.webhook_secret)
    assert event.type == "payment_intent.succeeded" and event.data.object.id == pi.id
    assert {e["type"] for e in rx} >= {"payment_intent.created", "charge.succeeded", "payment_intent.succeeded"}
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(req["body"], header, "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(req["body"].replace(b"succeeded", b"failed"), header, sandbox.webhook_secret)


def test_old_signature_timestamp_rejected(sandbox, client, webhooks):
    sandbox.webhook_mode(sign_offset=-600)
    pi = _pi(client)
    webhooks.wait_for(lambda evts: any(e["data"]["object"]["id"] == pi.id for e in evts))
    req = webhooks.requests[-1]
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(req["body"], req["headers"]["Stripe-Signature"], sandbox.webhook_secret)
    # ...while the same payload signed now passes
    fresh = sign(req["body"], sandbox.webhook_secret, int(time.time()))
    assert stripe.Webhook.construct_event(req["body"], fresh, sandbox.webhook_secret).id


def test_webhook_duplicated(sandbox, client, webhooks):
    sandbox.webhook_mode(duplicate=3)
    pi = _pi(client)
    assert sandbox.wait_for_webhooks(10)
    created = [e for e in webhooks.events() if e["type"] == "payment_intent.created"
               and e["data"]["object"]["id"] == pi.id]
    assert len(created) == 3 and len({e["id"] for e in created}) == 1


def test_webhook_shuffled(sandbox, client, webhooks):
    sandbox.webhook_mode(shuffle=True, shuffle_window=0.3)
    made = [_pi(client, metadata={"n": str(i)}).id for i in range(5)]
    assert sandbox.wait_for_webhooks(10)
    got = [e["data"]["object"]["id"] for e in webhooks.events()]
    assert sorted(got) == sorted(made)
    assert got != made


def test_webhook_delayed(sandbox, client, webhooks):
    sandbox.webhook_mode(delay=1.0)
    t0 = time.time()
    pi = _pi(client)
    time.sleep(0.5)
    assert webhooks.events() == []
    webhooks.wait_for(lambda evts: any(e["data"]["object"]["id"] == pi.id for e in evts), timeout=5)
    assert webhooks.requests[0]["at"] - t0 >= 0.9


def test_webhook_dropped(sandbox, client, webhooks):
    sandbox.webhook_mode(drop=True, count=1)
    dropped = _pi(client)
    kept = _pi(client)
    webhooks.wait_for(lambda evts: any(e["data"]["object"]["id"] == kept.id for e in evts))
    assert sandbox.wait_for_webhooks(5)
    assert dropped.id not in [e["data"]["object"]["id"] for e in webhooks.events()]
    # the event still exists in the API, as with real Stripe
    evts = client.v1.events.list(params={"type": "payment_intent.created", "limit": 5})
    assert dropped.id in [e.data.object.id for e in evts.data]
    log = sandbox.webhook_deliveries()
    assert any(d["dropped"] for d in log)


def test_webhook_retried_with_backoff_on_failure(sandbox, client, webhooks):
    webhooks.status = lambda n: 500 if n <= 2 else 200
    sandbox.webhook_mode(retry_base=0.1)
    pi = _pi(client)
    assert sandbox.wait_for_webhooks(10)
    mine = [r for r in webhooks.requests if pi.id.encode() in r["body"]]
    assert len(mine) == 3
    assert mine[2]["at"] - mine[1]["at"] >= mine[1]["at"] - mine[0]["at"] - 0.05


# -- API faults --------------------------------------------------------------------------------------------------


def test_fault_slow(sandbox, client):
    sandbox.inject_faults("slow", delay=0.6, path="/v1/customers")
    t = time.perf_counter()
    client.v1.customers.create(params={})
    assert time.perf_counter() - t >= 0.6
    t = time.perf_counter()
    client.v1.customers.create(params={})
    assert time.perf_counter() - t < 0.3  # only the next call


def test_fault_500_before_work(sandbox, client):
    before = len(client.v1.customers.list(params={"limit": 100, "email": "f500b@example.com"}).data)
    sandbox.inject_faults("error_before", path="/v1/customers", method="POST")
    with pytest.raises(stripe.APIError) as ei:
        client.v1.customers.create(params={"email": "f500b@example.com"})
    assert ei.value.http_status == 500
    assert len(client.v1.customers.list(params={"limit": 100, "email": "f500b@example.com"}).data) == before


def test_fault_500_after_work_then_retry_replays(sandbox, client, retrying_client):
    sandbox.inject_faults("error_after", path="/v1/customers", method="POST")
    with pytest.raises(stripe.APIError):
        client.v1.customers.create(params={"email": "f500a@example.com"}, options={"idempotency_key": "f500a"})
    done = client.v1.customers.list(params={"email": "f500a@example.com"}).data
    assert len(done) == 1  # the work was done
    again = client.v1.customers.create(params={"email": "f500a@example.com"}, options={"idempotency_key": "f500a"})
    assert again.id == done[0].id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    # the SDK's own retries hide the fault: same key, one customer
    sandbox.inject_faults("error_after", path="/v1/customers", method="POST")
    cus = retrying_client.v1.customers.create(params={"email": "f500r@example.com"})
    assert [c.id for c in client.v1.customers.list(params={"email": "f500r@example.com"}).data] == [cus.id]


def test_fault_drop_before_work(sandbox, client, retrying_client):
    sandbox.inject_faults("drop_before", path="/v1/customers", method="POST")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"email": "dropb@example.com"})
    assert client.v1.customers.list(params={"email": "dropb@example.com"}).data == []
    sandbox.inject_faults("drop_before", path="/v1/customers", method="POST")
    cus = retrying_client.v1.customers.create(params={"email": "dropb2@example.com"})
    assert [c.id for c in client.v1.customers.list(params={"email": "dropb2@example.com"}).data] == [cus.id]


def test_fault_drop_after_work(sandbox, client, retrying_client):
    sandbox.inject_faults("drop_after", path="/v1/customers", method="POST")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"email": "dropa@example.com"}, options={"idempotency_key": "dropa"})
    assert len(client.v1.customers.list(params={"email": "dropa@example.com"}).data) == 1
    sandbox.inject_faults("drop_after", path="/v1/customers", method="POST", count=1)
    cus = retrying_client.v1.customers.create(params={"email": "dropa2@example.com"})
    assert [c.id for c in client.v1.customers.list(params={"email": "dropa2@example.com"}).data] == [cus.id]


def test_fault_count_and_path_filter(sandbox, client):
    sandbox.inject_faults("error_before", count=2, path="/v1/payment_intents")
    client.v1.customers.create(params={})  # other paths unaffected
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            _pi(client)
    assert _pi(client).status == "requires_payment_method"


def test_reset_faults(sandbox, client):
    sandbox.inject_faults("error_before", count=5)
    sandbox.reset_faults()
    assert client.v1.customers.create(params={}).id.startswith("cus_")
