"""account.updated webhooks (issue 16): delivered duplicated and shuffled by the sandbox, or replayed
out of order, each account's change is applied and audited once; an event older than the newest
applied is ignored without asking Stripe."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import stripe
from sqlalchemy import select

from app.models import AuditEvent, StripeEvent
from app.services import payout_accounts, settlement
from tests.payouts.helpers_money import started


def changes(db, account) -> list[tuple[str, str, str]]:
    rows = db.scalars(select(AuditEvent).where(AuditEvent.action == "payout_account.updated",
                                               AuditEvent.stripe_object_id == account.stripe_account_id)
                      .order_by(AuditEvent.seq))
    return [(r.details["source"], r.details["from"], r.details["to"]) for r in rows]


def test_duplicated_and_shuffled_deliveries_apply_once(db, provider, sandbox, live_server, queue, clock):
    account = started(db, provider, clock)
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=3, shuffle=True, max_attempts=1)
    sandbox.onboard_account(account.stripe_account_id)            # account.updated: now enabled
    client = stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base})
    client.v1.accounts.update(account.stripe_account_id, params={"metadata": {"note": "x"}})   # and another
    assert sandbox.wait_for_webhooks(15)
    ids = list(db.scalars(select(StripeEvent.id).where(StripeEvent.type == "account.updated",
                                                        StripeEvent.object_id == account.stripe_account_id)))
    assert len(ids) == 2                                            # stored once each, however often delivered
    processed, failed = settlement.process_events(db)
    assert failed == [] and processed >= 2
    for event_id in reversed(ids):                                  # again, out of order: already done
        assert settlement.process_event(db, event_id) == "done"
    db.expire_all()
    fresh = payout_accounts.account_for(db, provider.id)
    assert fresh.status == "enabled" and fresh.ready
    assert changes(db, fresh) == [("create", "creating", "onboarding"), ("webhook", "onboarding", "enabled")]
    received = db.scalars(select(AuditEvent).where(AuditEvent.action == "stripe.event_received",
                                                   AuditEvent.stripe_object_id == fresh.stripe_account_id)).all()
    assert len(received) == 2


def post_event(client, app, event: dict):
    body = json.dumps(event).encode()
    t = str(int(time.time()))
    secret = app.config["SETTINGS"].STRIPE_WEBHOOK_SECRET
    sig = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": f"t={t},v1={sig}",
                                                               "Content-Type": "application/json"})


def account_event(event_id, account_id, created, **flags):
    obj = {"id": account_id, "object": "account", "details_submitted": False, "charges_enabled": False,
           "payouts_enabled": False, "requirements": {"currently_due": ["external_account"]}, **flags}
    return {"id": event_id, "object": "event", "type": "account.updated", "created": created,
            "account": account_id, "data": {"object": obj}}


def test_an_older_event_after_a_newer_one_is_ignored(app, db, client, provider, sandbox, queue, clock, monkeypatch):
    account = started(db, provider, clock)
    acct = account.stripe_account_id
    now = int(time.time())
    newer = account_event("evt_payout_newer", acct, now, details_submitted=True)
    older = account_event("evt_payout_older", acct, now - 60)
    for event in (newer, older, newer):                             # the newer one delivered twice
        assert post_event(client, app, event).status_code == 200
    sandbox.onboard_account(acct)
    assert settlement.process_event(db, "evt_payout_newer") == "applied"     # re-read from Stripe: enabled
    reads = []
    original = payout_accounts.gateway

    def counting():
        gw = original()
        reads.append(1)
        return gw

    monkeypatch.setattr(payout_accounts, "gateway", counting)
    assert settlement.process_event(db, "evt_payout_older") == "unchanged"
    assert reads == []                                               # stale: Stripe not even asked
    db.expire_all()
    fresh = payout_accounts.account_for(db, provider.id)
    assert fresh.status == "enabled" and fresh.last_event_created == now
    assert db.get(StripeEvent, "evt_payout_older").processed_at is not None
    assert changes(db, fresh) == [("create", "creating", "onboarding"), ("webhook", "onboarding", "enabled")]


def test_an_event_about_an_account_not_ours_is_ignored(app, db, client, sandbox, queue):
    assert post_event(client, app, account_event("evt_payout_stranger", "acct_notours00000", 1)).status_code == 200
    assert settlement.process_event(db, "evt_payout_stranger") == "ignored"
