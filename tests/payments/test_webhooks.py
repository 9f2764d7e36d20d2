"""Webhooks as Stripe sends them on a bad day: duplicated, shuffled, dropped, forged, stale."""
import json
import time

import pytest
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


# -- the acknowledgement: one statement, nothing parsed twice, never a 5xx ---------------------------------

def _signed(sandbox, event_or_body, *, at=None):
    body = event_or_body if isinstance(event_or_body, bytes) else json.dumps(event_or_body).encode()
    return body, {"Content-Type": "application/json",
                  "Stripe-Signature": sign(body, sandbox.webhook_secret, int(at or time.time()))}


def _event(event_id="evt_ack_1", intent="pi_unknown_1", kind="payment_intent.succeeded"):
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
            "data": {"object": {"id": intent, "object": "payment_intent", "amount": 12500}}}


def test_signature_check_is_stripes_v1_scheme(sandbox):
    import stripe

    from app.integrations.stripe_signature import InvalidSignature, verify

    body, now, secret = b'{"id": "evt_1"}', int(time.time()), sandbox.webhook_secret
    good = sign(body, secret, now)
    verify(body, good, secret)
    stripe.WebhookSignature.verify_header(body, good, secret, 300)          # the SDK agrees
    other = sign(body, "whsec_other", now).split(",")[1]
    verify(body, f"t={now},{other},{good.split(',')[1]},v0=abc", secret)    # a rolled secret: any v1
    for header in (None, "", "garbage", f"v1={good.split('v1=')[1]}", f"t=abc,{good.split(',')[1]}",
                   f"t={now}", sign(body, "whsec_other", now), sign(body, secret, now - 301),
                   f"t={now},v1=\u00e9\u00e9", sign(body + b" ", secret, now)):
        with pytest.raises(InvalidSignature):
            verify(body, header, secret)


def test_a_new_event_is_one_statement_stored_as_sent_and_a_duplicate_one_statement_writing_nothing(
        app, db, client, sandbox, queue):
    from sqlalchemy import event as sa_event

    from app.extensions import db as sqla

    body, headers = _signed(sandbox, _event())
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0])

    sa_event.listen(sqla.engine, "before_cursor_execute", count)
    try:
        first = client.post("/webhooks/stripe", data=body, headers=headers)
        assert first.status_code == 200 and first.json == {"received": True}
        assert statements == ["INSERT"]
        statements.clear()
        again = client.post("/webhooks/stripe", data=body, headers=headers)
        assert again.status_code == 200 and again.json == {"received": True, "duplicate": True}
        assert statements == ["INSERT"]
    finally:
        sa_event.remove(sqla.engine, "before_cursor_execute", count)
    stored = fresh(db, StripeEvent, "evt_ack_1")
    assert stored.payload == json.loads(body) and stored.type == "payment_intent.succeeded"
    assert stored.object_id == "pi_unknown_1" and stored.processed_at is None and stored.attempts == 0
    assert stored_events(db) == 1
    # Its processing was handed off once, after the commit.
    assert len(queue.get_job_ids()) == 1


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'"evt"', b"{}", b'{"id": 5}', b'{"id": ""}',
    json.dumps({"id": "e" * 256}).encode(), json.dumps({"id": "evt_x", "type": "t" * 65}).encode(),
    b'{"id": "evt_x", "created": "yesterday"}', b'{"id": "evt_x", "created": 99999999999999999999}',
    b'{"id": "evt_x", "created": true}', b'{"id": "evt_x", "data": {"object": {"id": 7}}}',
    b'{"id": "evt_x", "note": "\\u0000"}', b'{"id": "evt_x\\u0000"}', b'{"id": "evt_x", "n": NaN}',
    b'{"id": "evt_x", "s": "\\ud800"}', b"\xff\xfe{}", b"[" * 100000 + b"]" * 100000,
    json.dumps({"id": "evt_x", "x": 1}).encode("utf-16"),
], ids=lambda body: repr(body[:40]))
def test_a_signed_body_that_is_no_event_is_400_never_5xx(app, db, client, sandbox, body):
    answer = client.post("/webhooks/stripe", data=body, headers=_signed(sandbox, body)[1])
    assert answer.status_code == 400 and answer.json == {"error": "not an event"}
    assert stored_events(db) == 0


def test_odd_but_valid_events_are_stored(app, db, client, sandbox, queue):
    for event in ({"id": "evt_bare"},                                           # nothing else: type ''
                  {"id": "evt_list", "type": "x", "data": {"object": ["a"]}},   # no object id
                  {"id": "evt_utf", "type": "x", "note": "caf\u00e9 \u2603", "created": 0}):
        body, headers = _signed(sandbox, event)
        assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    assert stored_events(db) == 3
    assert fresh(db, StripeEvent, "evt_utf").payload["note"] == "caf\u00e9 \u2603"


# -- processing: the drain ------------------------------------------------------------------------------

def test_the_drain_processes_every_stored_event_and_audits_each_once(app, db, client, sandbox, queue):
    from sqlalchemy import func

    from app.jobs.payments import process_stripe_events, request_processing
    from app.models import AuditEvent

    for i in range(5):
        body, headers = _signed(sandbox, _event(f"evt_drain_{i}", f"pi_drain_{i}"))
        for _ in range(3):
            assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    # 15 deliveries of 5 new events: the first hand-off enqueued the drain, the others found it waiting.
    assert [queue.fetch_job(i).func_name for i in queue.get_job_ids()] == ["app.jobs.payments.process_stripe_events"]
    with app.app_context():
        assert request_processing("evt_drain_1") is False      # one is waiting: a SET NX, nothing more
    assert len(queue.get_job_ids()) == 1
    assert process_stripe_events() == {"processed": 5, "failed": 0}
    db.expire_all()
    assert all(e.processed_at is not None and e.attempts == 1 for e in db.scalars(select(StripeEvent)))
    rows = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "stripe.event_received")))
    assert sorted(r.details["event_id"] for r in rows) == [f"evt_drain_{i}" for i in range(5)]
    received = {e.id: e.received_at for e in db.scalars(select(StripeEvent))}
    assert all(r.occurred_at == received[r.details["event_id"]] for r in rows)   # dated when received
    assert {r.actor_type for r in rows} == {"webhook"}
    with app.app_context():
        assert request_processing("evt_late") is True           # the drain cleared its flag first
    assert process_stripe_events() == {"processed": 0, "failed": 0}
    # Run again, or one at a time: nothing twice.
    assert process_stripe_event("evt_drain_0") == "done"
    assert db.scalar(select(func.count()).select_from(AuditEvent)
                     .where(AuditEvent.action == "stripe.event_received")) == 5


def test_the_drain_settles_each_attempt_once_for_all_its_events(app, db, held, clock, browser_pay, sandbox,
                                                                  stripe_admin, live_server, queue):
    from app.jobs.payments import process_stripe_events

    sandbox.clear_webhook_deliveries()
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=3, shuffle=True, max_attempts=1)
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(15)
    assert stored_events(db) >= 1
    result = process_stripe_events()
    assert result["failed"] == 0 and result["processed"] == stored_events(db)
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert count_action(db, held.id, "booking.confirmed") == 1
    assert_captured_once(db, stripe_admin, attempt.id)
    assert sandbox.wait_for_webhooks(15)
    process_stripe_events()
    assert_captured_once(db, stripe_admin, attempt.id)
    assert sweep_payments() == {"events": 0, "captures": 0, "released": 0}


def test_a_failing_settle_leaves_its_events_for_later_and_the_drain_ends(app, db, client, held, clock, sandbox,
                                                                        queue, monkeypatch):
    from app.jobs.payments import process_stripe_events
    from app.services import settlement

    attempt = start(db, held, clock)
    for i, kind in enumerate(("payment_intent.created", "payment_intent.processing")):
        body, headers = _signed(sandbox, _event(f"evt_fail_{i}", attempt.stripe_payment_intent_id, kind))
        assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    body, headers = _signed(sandbox, _event("evt_other", "pi_not_ours"))
    assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200

    def broken(*args, **kwargs):
        raise RuntimeError("Stripe unreachable")

    monkeypatch.setattr(settlement, "settle", broken)
    monkeypatch.setattr("app.jobs.payments.DRAIN_BATCH", 2)        # more batches than one
    assert process_stripe_events() == {"processed": 1, "failed": 2}
    failed = fresh(db, StripeEvent, "evt_fail_0")
    assert failed.processed_at is None and failed.attempts == 1 and failed.last_error == "RuntimeError"
    assert fresh(db, StripeEvent, "evt_other").processed_at is not None
    monkeypatch.undo()
    assert process_stripe_events() == {"processed": 2, "failed": 0}       # a later drain (or the sweep)
    db.expire_all()
    assert all(e.processed_at is not None for e in db.scalars(select(StripeEvent)))
    assert [e.attempts for e in db.scalars(select(StripeEvent).order_by(StripeEvent.id))] == [2, 2, 1]
