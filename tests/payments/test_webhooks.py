"""Webhooks as Stripe sends them on a bad day: duplicated, shuffled, dropped, forged, stale."""
import json
import time

from sqlalchemy import select

from app.jobs.payments import poll_payment, process_stripe_event, sweep_payments
from devtools.stripe_sandbox.webhooks import sign
from tests.helpers.payments import (SUCCESS, Appointment, PaymentAttempt, StripeEvent, assert_captured_once,
                                    count_action, fresh, start, stored_events)


def _deliveries_by_event(sandbox):
    out = {}
    for d in sandbox.webhook_deliveries():
        out.setdefault(d["event_id"], []).append(d)
    return out


def test_five_copies_shuffled_make_one_transition_and_one_capture(app, db, held, clock, browser_pay, sandbox,
                                                                  stripe_admin, live_server, queue):
    sandbox.clear_webhook_deliveries()
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=5, shuffle=True, max_attempts=1)
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(15)
    deliveries = _deliveries_by_event(sandbox)
    assert deliveries and all(len(copies) == 5 for copies in deliveries.values())
    assert all(d["status"] == 200 for copies in deliveries.values() for d in copies)  # duplicates acknowledged
    db.expire_all()
    stored = list(db.scalars(select(StripeEvent)))
    assert sorted(e.id for e in stored) == sorted(deliveries)           # each stored once

    for event in stored:                                                # the jobs, run as queued (twice: safe)
        process_stripe_event(event.id)
        process_stripe_event(event.id)
    appointment = fresh(db, Appointment, held.id)
    assert appointment.status == "confirmed"
    assert count_action(db, held.id, "booking.confirmed") == 1
    assert count_action(db, held.id, "payment.succeeded") == 1
    assert_captured_once(db, stripe_admin, attempt.id)
    # The capture's own events arrive too (5 copies each): still one capture.
    assert sandbox.wait_for_webhooks(15)
    for event_id in db.scalars(select(StripeEvent.id).where(StripeEvent.processed_at.is_(None))):
        process_stripe_event(event_id)
    assert_captured_once(db, stripe_admin, attempt.id)
    assert sweep_payments() == {"events": 0, "captures": 0, "released": 0}


def test_dropped_webhooks_the_poll_confirms(app, db, held, clock, browser_pay, sandbox, stripe_admin,
                                            live_server, queue):
    sandbox.clear_webhook_deliveries()
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(drop=True)
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(10)
    deliveries = sandbox.webhook_deliveries()
    assert deliveries and all(d["dropped"] for d in deliveries)
    assert stored_events(db) == 0
    assert fresh(db, Appointment, held.id).status == "held"
    assert poll_payment(attempt.id) == "confirmed"
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)


def _event_for(sandbox, stripe_admin, attempt):
    events = stripe_admin.client.v1.events.list(params={"limit": 100})
    for event in events.auto_paging_iter():
        data = event.to_dict()
        if data["data"]["object"].get("id") == attempt.stripe_payment_intent_id and \
                data["type"] == "payment_intent.amount_capturable_updated":
            return data
    raise AssertionError("no event for the intent")


def test_forged_or_stale_signatures_are_refused_and_nothing_changes(app, db, client, held, clock, browser_pay,
                                                                   sandbox, stripe_admin):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    body = json.dumps(_event_for(sandbox, stripe_admin, attempt)).encode()
    now = int(time.time())
    cases = {
        "forged": sign(body, "whsec_not_ours", now),
        "stale": sign(body, sandbox.webhook_secret, now - 600),
        "tampered": sign(body, sandbox.webhook_secret, now),      # signed, then the body changed
        "missing": None,
    }
    for name, signature in cases.items():
        payload = body if name != "tampered" else body.replace(b"12500", b"99")
        assert name != "tampered" or payload != body
        headers = {"Content-Type": "application/json"}
        if signature:
            headers["Stripe-Signature"] = signature
        response = client.post("/webhooks/stripe", data=payload, headers=headers)
        assert response.status_code == 400, name
    assert stored_events(db) == 0
    assert fresh(db, Appointment, held.id).status == "held"
    assert fresh(db, PaymentAttempt, attempt.id).status == "requires_payment_method"
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "requires_capture"

    # The genuine one, signed now, is taken (and a second copy acknowledged, not stored twice).
    good = {"Content-Type": "application/json", "Stripe-Signature": sign(body, sandbox.webhook_secret, now)}
    assert client.post("/webhooks/stripe", data=body, headers=good).json == {"received": True}
    assert client.post("/webhooks/stripe", data=body, headers=good).json == {"received": True,
                                                                                "duplicate": True}
    assert stored_events(db) == 1


def test_stale_signature_from_the_sandbox_is_refused(app, db, held, clock, browser_pay, sandbox, live_server):
    sandbox.clear_webhook_deliveries()
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(sign_offset=-600, max_attempts=1)
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(10)
    deliveries = sandbox.webhook_deliveries()
    assert deliveries and {d["status"] for d in deliveries} == {400}
    assert stored_events(db) == 0
    assert fresh(db, Appointment, held.id).status == "held"
