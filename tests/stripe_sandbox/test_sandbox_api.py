"""Shapes, state consistency, idempotency, lists, refunds, capture, clock and auth through the official SDK."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import stripe

from tests.helpers.stripe_shapes import NESTED, assert_shape, raw



def test_shapes_of_every_resource(client, sandbox, new_card):
    cus = client.v1.customers.create(params={"email": "shape@example.com", "name": "Shape Test"})
    assert_shape("customer", raw(cus))
    assert_shape("customer.invoice_settings", raw(cus)["invoice_settings"], NESTED["customer.invoice_settings"])
    pm = new_card("4242424242424242")
    assert_shape("payment_method", raw(pm))
    assert_shape("payment_method.card", raw(pm)["card"], NESTED["payment_method.card"])
    assert_shape("payment_method.billing_details", raw(pm)["billing_details"],
                 NESTED["payment_method.billing_details"])
    si = client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id, "confirm": True})
    assert_shape("setup_intent", raw(si))
    pi = client.v1.payment_intents.create(params={"amount": 1234, "currency": "usd", "customer": cus.id,
                                                  "payment_method": pm.id, "confirm": True,
                                                  "expand": ["latest_charge"]})
    pi_raw = raw(pi)
    charge = pi_raw.pop("latest_charge")
    assert_shape("payment_intent", {**pi_raw, "latest_charge": charge["id"]})
    assert_shape("charge", charge)
    assert_shape("charge.outcome", charge["outcome"], NESTED["charge.outcome"])
    assert_shape("charge.payment_method_details.card", charge["payment_method_details"]["card"],
                 NESTED["charge.payment_method_details.card"])
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 200})
    assert_shape("refund", raw(refund))
    events = client.v1.events.list(params={"limit": 3})
    for evt in raw(events)["data"]:
        assert_shape("event", evt)
        assert evt["data"]["object"]["id"]
    assert_shape("charge", raw(client.v1.charges.retrieve(charge["id"])))


def test_state_consistency_manual_capture(client, sandbox, new_card):
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 10000, "currency": "usd", "payment_method": pm.id,
                                                  "capture_method": "manual", "confirm": True})
    assert pi.status == "requires_capture"
    assert pi.amount_capturable == 10000 and pi.amount_received == 0 and pi.next_action is None
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.captured is False and charge.amount_captured == 0
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 10001})
    assert ei.value.code == "amount_too_large"
    captured = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 7500})
    assert captured.status == "succeeded"
    assert captured.amount_received == 7500 and captured.amount_capturable == 0
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.captured is True and charge.amount_captured == 7500
    assert charge.amount_refunded == 2500  # the rest is released
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.capture(pi.id)
    assert ei.value.code == "payment_intent_unexpected_state"


def test_cancel_with_reason(client, new_card):
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd", "payment_method": pm.id})
    assert pi.status == "requires_confirmation"
    canceled = client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "requested_by_customer"})
    assert canceled.status == "canceled" and canceled.cancellation_reason == "requested_by_customer"
    assert isinstance(canceled.canceled_at, int)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.cancel(pi.id)


def test_authorization_expires_after_seven_days(client, sandbox, new_card):
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 5000, "currency": "usd", "payment_method": pm.id,
                                                  "capture_method": "manual", "confirm": True})
    sandbox.advance_clock(6 * 86400)
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_capture"
    sandbox.advance_clock(86400 + 60)
    expired = client.v1.payment_intents.retrieve(pi.id)
    assert expired.status == "canceled"
    assert expired.cancellation_reason == "automatic"
    assert expired.amount_capturable == 0
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.capture(pi.id)
    evts = client.v1.events.list(params={"type": "payment_intent.canceled", "limit": 5})
    assert pi.id in [e.data.object.id for e in evts.data]


def test_update_and_metadata(client):
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd",
                                                  "metadata": {"visit": "v1", "drop": "x"},
                                                  "description": "Visit copay",
                                                  "statement_descriptor_suffix": "COPAY"})
    up = client.v1.payment_intents.update(pi.id, params={"amount": 1500, "metadata": {"drop": "", "n": "2"}})
    assert up.amount == 1500
    assert up.metadata.to_dict() == {"visit": "v1", "n": "2"}
    assert up.statement_descriptor_suffix == "COPAY"


def test_idempotent_replay_and_mismatch(client):
    params = {"amount": 4200, "currency": "usd", "metadata": {"order": "1"}}
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "idem-A"})
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "idem-A"})
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    with pytest.raises(stripe.IdempotencyError) as ei:
        client.v1.payment_intents.create(params={**params, "amount": 4300}, options={"idempotency_key": "idem-A"})
    assert ei.value.http_status == 400
    assert len(client.v1.payment_intents.list(params={"limit": 100}).data) >= 1
    ids = [p.id for p in client.v1.payment_intents.list(params={"limit": 100}).data]
    assert ids.count(first.id) == 1


def test_idempotent_replay_of_a_decline(client, new_card):
    pm = new_card("4000000000000002")
    params = {"amount": 4200, "currency": "usd", "payment_method": pm.id, "confirm": True}
    with pytest.raises(stripe.CardError) as e1:
        client.v1.payment_intents.create(params=params, options={"idempotency_key": "idem-decline"})
    with pytest.raises(stripe.CardError) as e2:
        client.v1.payment_intents.create(params=params, options={"idempotency_key": "idem-decline"})
    assert e2.value.headers.get("Idempotent-Replayed") == "true"
    assert e1.value.json_body == e2.value.json_body


def test_lists_and_pagination(client):
    cus = client.v1.customers.create(params={"email": "paging@example.com"})
    made = [client.v1.payment_intents.create(params={"amount": 100 + i, "currency": "usd", "customer": cus.id})
            for i in range(7)]
    newest_first = [p.id for p in reversed(made)]
    page1 = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 3})
    assert [p.id for p in page1.data] == newest_first[:3] and page1.has_more
    page2 = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 3,
                                                   "starting_after": page1.data[-1].id})
    assert [p.id for p in page2.data] == newest_first[3:6] and page2.has_more
    page3 = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 3,
                                                   "starting_after": page2.data[-1].id})
    assert [p.id for p in page3.data] == newest_first[6:] and not page3.has_more
    all_ids = [p.id for p in client.v1.payment_intents.list(params={"customer": cus.id, "limit": 2})
               .auto_paging_iter()]
    assert all_ids == newest_first
    back = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 2,
                                                  "ending_before": newest_first[4]})
    assert [p.id for p in back.data] == newest_first[2:4]


def test_event_filters(client, new_card):
    start = client.v1.events.list(params={"limit": 1}).data
    since = start[0].created if start else 0
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 999, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True})
    succeeded = client.v1.events.list(params={"type": "payment_intent.succeeded", "created": {"gte": since},
                                              "limit": 100})
    assert pi.id in [e.data.object.id for e in succeeded.data]
    assert all(e.type == "payment_intent.succeeded" for e in succeeded.data)
    both = client.v1.events.list(params={"types": ["payment_intent.created", "charge.succeeded"], "limit": 100})
    assert {e.type for e in both.data} <= {"payment_intent.created", "charge.succeeded"}
    mine = [e for e in both.data if getattr(e.data.object, "payment_intent", None) == pi.id
            or e.data.object.id == pi.id]
    assert {e.type for e in mine} == {"payment_intent.created", "charge.succeeded"}
    evt = client.v1.events.retrieve(succeeded.data[0].id)
    assert evt.type == "payment_intent.succeeded"
    future = client.v1.events.list(params={"created": {"gt": int(time.time()) + 10 ** 8}})
    assert future.data == []


def test_refunds_partial_and_over_refund(client, new_card):
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 3000, "currency": "usd", "payment_method": pm.id,
                                                  "confirm": True})
    r1 = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000, "reason": "requested_by_customer",
                                          "metadata": {"why": "overcharge"}})
    assert r1.status == "succeeded" and r1.amount == 1000 and r1.charge == pi.latest_charge
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2001})
    assert ei.value.code == "amount_too_large"
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id, "reason": "changed_mind"})
    assert ei.value.param == "reason"
    r2 = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert r2.amount == 2000
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 3000 and charge.refunded is True
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert ei.value.code == "charge_already_refunded"
    listed = client.v1.refunds.list(params={"payment_intent": pi.id})
    assert [r.id for r in listed.data] == [r2.id, r1.id]
    assert client.v1.refunds.retrieve(r1.id).metadata.why == "overcharge"


def test_refund_of_uncaptured_intent_refused(client, new_card):
    pm = new_card("4242424242424242")
    pi = client.v1.payment_intents.create(params={"amount": 3000, "currency": "usd", "payment_method": pm.id,
                                                  "capture_method": "manual", "confirm": True})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"payment_intent": pi.id})


def test_customer_retrieve_update_and_default_pm(client, new_card):
    cus = client.v1.customers.create(params={"email": "a@example.com", "metadata": {"patient": "p1"}})
    pm = new_card("5555555555554444")
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    up = client.v1.customers.update(cus.id, params={"name": "New Name",
                                                    "invoice_settings": {"default_payment_method": pm.id}})
    assert up.name == "New Name" and up.invoice_settings.default_payment_method == pm.id
    got = client.v1.customers.retrieve(cus.id)
    assert got.email == "a@example.com" and got.metadata.patient == "p1"
    assert client.v1.payment_methods.retrieve(pm.id).card.brand == "mastercard"
    detached = client.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    assert client.v1.payment_methods.list(params={"customer": cus.id, "type": "card"}).data == []


def test_errors_404_400(client):
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.retrieve("pi_doesnotexist")
    assert ei.value.http_status == 404 and ei.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.create(params={"currency": "usd"})
    assert ei.value.code == "parameter_missing" and ei.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.payment_intents.create(params={"amount": 100, "currency": "usd", "bogus": "1"})
    assert ei.value.param == "bogus"


def _http(url, *, method="GET", data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, dict(e.headers), json.loads(e.read() or b"null")
        finally:
            e.close()


def test_401s(sandbox, pk_client):
    status, _, body = _http(sandbox.api_base + "/v1/customers")
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    status, _, body = _http(sandbox.api_base + "/v1/customers", headers={"Authorization": "Bearer sk_test_wrong"})
    assert status == 401 and "Invalid API Key" in body["error"]["message"]
    with pytest.raises(stripe.AuthenticationError):
        pk_client.v1.customers.list()
    with pytest.raises(stripe.AuthenticationError):
        pk_client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})


def test_publishable_key_routes_and_cors(sandbox, client):
    pi = client.v1.payment_intents.create(params={"amount": 1100, "currency": "usd"})
    pk = sandbox.publishable_key
    status, headers, body = _http(f"{sandbox.api_base}/v1/payment_intents/{pi.id}?key={pk}"
                                  f"&client_secret={pi.client_secret}", headers={"Origin": "http://127.0.0.1:1"})
    assert status == 200 and body["id"] == pi.id
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, _, body = _http(f"{sandbox.api_base}/v1/payment_intents/{pi.id}?key={pk}&client_secret=wrong")
    assert status == 400
    status, _, body = _http(f"{sandbox.api_base}/v1/payment_intents/{pi.id}?key={pk}")
    assert status == 401
    status, headers, _ = _http(f"{sandbox.api_base}/v1/payment_methods", method="OPTIONS",
                               headers={"Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "authorization,content-type"})
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    form = (f"key={pk}&type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=40"
            f"&card[cvc]=123").encode()
    status, _, pm = _http(sandbox.api_base + "/v1/payment_methods", method="POST", data=form,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and pm["card"]["last4"] == "4242" and pm["card"]["exp_year"] == 2040
    confirm = f"key={pk}&client_secret={pi.client_secret}&payment_method={pm['id']}".encode()
    status, _, body = _http(f"{sandbox.api_base}/v1/payment_intents/{pi.id}/confirm", method="POST", data=confirm,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and body["status"] == "succeeded"


def test_garbage_gets_stripe_errors_not_tracebacks(sandbox):
    auth = {"Authorization": f"Bearer {sandbox.secret_key}", "Content-Type": "application/x-www-form-urlencoded"}
    for path, data in [("/v1/payment_intents", b"amount[x]=1&currency=usd"),
                       ("/v1/payment_intents", b"amount=abc&currency=usd"),
                       ("/v1/payment_intents", b"amount=100&currency=usd&metadata=notadict"),
                       ("/v1/payment_intents", b"\xff\xfe"),
                       ("/v1/customers", b"a[b]=1&a=2"),
                       ("/v1/nope", b"")]:
        status, _, body = _http(sandbox.api_base + path, method="POST", data=data, headers=auth)
        assert 400 <= status < 500, (path, data, status, body)
        assert set(body) == {"error"} and "Traceback" not in json.dumps(body)


def test_js_is_served(sandbox):
    with urllib.request.urlopen(sandbox.js_url, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/javascript")
        assert b"confirmPayment" in resp.read()


def test_two_instances_do_not_clash(tmp_path, sandbox):
    from devtools.stripe_sandbox.process import SandboxProcess
    with SandboxProcess.start(tmp_path / "other", secret_key="sk_test_other") as other:
        assert other.api_base != sandbox.api_base
        status, _, body = _http(other.api_base + "/v1/customers",
                                headers={"Authorization": "Bearer sk_test_other"})
        assert status == 200 and body["data"] == []
    assert not other.running
    other.stop()  # idempotent


def test_start_failure_is_clear(tmp_path, sandbox):
    from devtools.stripe_sandbox.process import SandboxError, SandboxProcess
    port = int(sandbox.api_base.rsplit(":", 1)[1])
    with pytest.raises(SandboxError) as ei:
        SandboxProcess.start(tmp_path / "clash", port=port, timeout=10)
    assert "Address already in use" in str(ei.value) or "address" in str(ei.value).lower()


def test_api_calls_are_fast(client):
    t = time.perf_counter()
    for _ in range(20):
        client.v1.customers.create(params={"email": "fast@example.com"})
    assert (time.perf_counter() - t) / 20 < 0.05
