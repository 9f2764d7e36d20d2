"""Disputes reach us from Stripe (issue 16): a dispute the sandbox opens on a visit paid with
4000000000000259 is applied from Stripe's own copy: stored once, linked to the visit's charge and
appointment, the withdrawal in the ledger, the provider and billing told, the chain showing it; its
webhooks duplicated and shuffled apply each change once; a dispute whose webhook was dropped is found
by the poll; won and lost move the ledger and the provider's share."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.jobs import disputes as dispute_jobs
from app.models import Dispute, Notification, StripeEvent
from app.services import audit_chain, disputes, settlement
from app.services.audit import Actor
from tests.disputes import steps

WEBHOOK = Actor.system("webhook")


def apply(db, du: dict, event_type="charge.dispute.created", event_id="evt_test_1") -> str:
    state = disputes.apply_event(db, event_id=event_id, event_type=event_type, object_id=du["id"],
                                 created=du["created"], account=None, actor=WEBHOOK)
    db.commit()
    return state


def test_a_sandbox_dispute_is_applied_from_stripe_once(db, app, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=False)
    assert steps.stripe_disputes_of(stripe_admin, paid.intent) == []       # not before Stripe's "later"
    later_by_hand()
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert (du["status"], du["reason"], du["amount"]) == ("needs_response", "fraudulent", 12500)

    assert apply(db, du) == "opened"
    row = steps.ours(db, du["id"])
    assert (row.status, row.amount_cents, row.reason, row.charge_id, row.appointment_id) == (
        "needs_response", 12500, "fraudulent", paid.attempt.charge_id, paid.appointment.id)
    assert int(row.due_by.timestamp()) == du["evidence_details"]["due_by"]
    assert not row.is_charge_refundable and row.blocks_refund and row.alerted_at is not None

    # The withdrawal, from the dispute's own balance transaction: the amount and Stripe's $15 fee.
    [bt] = du["balance_transactions"]
    assert steps.ledger_of(db, du["id"]) == {"dispute_withdrawal": sorted([
        ("stripe_balance", -14000, bt["id"]), ("dispute_fees", 1500, bt["id"]), ("disputes_open", 12500, None)])}

    # The appointment's chain shows it.
    chain = audit_chain.build(db, paid.appointment)
    [opened] = [s for s in chain.steps if s.action == "dispute.opened"]
    assert (opened.stage, opened.stripe_id, opened.amount_cents) == ("dispute", du["id"], 12500)

    # The provider and billing are told: a date, a deadline and a link; nothing about the visit.
    from app.jobs.notifications import render

    alerts = db.scalars(select(Notification).where(Notification.template.like("dispute_opened%"))
                        .order_by(Notification.id)).all()
    assert sorted((n.template, n.user_id) for n in alerts) == sorted([
        ("dispute_opened_provider", paid.appointment.provider.user_id), ("dispute_opened_billing", billing_user.id)])
    for n in alerts:
        text = render(db, n).text
        assert "December 7" in text and "disputed" in text
        assert steps.TYPE_NAME not in text and "Oncology" not in text and "Pat Example" not in text
    billing_text = render(db, next(n for n in alerts if n.template == "dispute_opened_billing")).text
    assert f"/billing/disputes/{row.id}" in billing_text

    # Again (a duplicate delivery, the poll): nothing more.
    assert apply(db, du, event_type="charge.dispute.funds_withdrawn", event_id="evt_test_2") == "unchanged"
    assert db.scalar(select(func.count()).select_from(Dispute)
                     .where(Dispute.stripe_dispute_id == du["id"])) == 1
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened"]
    assert len(steps.ledger_of(db, du["id"])) == 1
    assert db.scalar(select(func.count()).select_from(Notification)
                     .where(Notification.template.like("dispute_opened%"))) == 2


def test_duplicated_and_shuffled_webhooks_apply_each_change_once(db, app, visit, later_by_hand, stripe_admin,
                                                                  sandbox, live_server, billing_user):
    paid = visit(happened=False)
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=3, shuffle=True, max_attempts=1)
    later_by_hand()                                   # opens: charge.dispute.created, .funds_withdrawn
    assert sandbox.wait_for_webhooks(15)
    processed, failed = settlement.process_events(db)
    assert failed == []
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    row = steps.ours(db, du["id"])
    assert row is not None and row.status == "needs_response"

    disputes.save_review(db, row, ["service_date", "product_description"], "winning_evidence",
                         Actor("user", billing_user.id, "billing"))
    db.commit()
    disputes.submit(db, row.id, Actor("user", billing_user.id, "billing"))   # charge.dispute.updated
    later_by_hand()                                   # won: .funds_reinstated, .closed
    assert sandbox.wait_for_webhooks(15)
    processed, failed = settlement.process_events(db)
    assert failed == []

    ids = list(db.scalars(select(StripeEvent.id).where(StripeEvent.object_id == du["id"])))
    kinds = sorted(db.scalars(select(StripeEvent.type).where(StripeEvent.object_id == du["id"])))
    assert kinds == sorted(["charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated",
                            "charge.dispute.funds_reinstated", "charge.dispute.closed"])   # stored once each
    for event_id in reversed(ids):                     # replayed out of order: already done
        assert settlement.process_event(db, event_id) == "done"
    row = steps.ours(db, du["id"])
    assert row.status == "won" and row.closed_at is not None
    assert steps.dispute_audits(db, paid.appointment.id) == [
        "dispute.opened", "dispute.reviewed", "dispute.submitted", "dispute.updated", "dispute.won"]
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    withdrawal, reinstatement = du["balance_transactions"]
    assert steps.ledger_of(db, du["id"]) == {
        "dispute_withdrawal": sorted([("stripe_balance", -14000, withdrawal["id"]),
                                      ("dispute_fees", 1500, withdrawal["id"]), ("disputes_open", 12500, None)]),
        "dispute_reinstatement": sorted([("stripe_balance", 12500, reinstatement["id"]),
                                         ("disputes_open", -12500, None)])}


def test_deliveries_and_the_poll_at_the_same_moment_make_one_dispute(db, app, visit, later_by_hand, stripe_admin,
                                                                      sandbox, live_server, queue):
    from app.jobs.payments import process_stripe_event
    from tests.helpers.concurrency import run_together

    paid = visit(happened=False)
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=2)
    later_by_hand()
    assert sandbox.wait_for_webhooks(15)
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    events = list(db.scalars(select(StripeEvent.id).where(StripeEvent.object_id == du["id"])))
    assert len(events) == 2                            # created, funds_withdrawn: stored once each
    results = run_together(*[(lambda e=e: process_stripe_event(e)) for e in events], dispute_jobs.poll)
    assert set(results[:2]) <= {"opened", "unchanged", "stale"}
    assert results[:2].count("opened") + (du["id"] in results[2]["opened"]) == 1     # one of them made it
    assert db.scalar(select(func.count()).select_from(Dispute).where(Dispute.stripe_dispute_id == du["id"])) == 1
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened"]
    assert list(steps.ledger_of(db, du["id"])) == ["dispute_withdrawal"]
    assert db.scalar(select(func.count()).select_from(Notification)
                     .where(Notification.template.like("dispute_opened%"),
                            Notification.appointment_id == paid.appointment.id)) == 2     # told once each


def test_an_older_event_after_a_newer_one_is_ignored_without_asking_stripe(db, visit, later_by_hand, stripe_admin,
                                                                          monkeypatch):
    paid = visit(happened=False)
    later_by_hand()
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert disputes.apply_event(db, event_id="evt_new", event_type="charge.dispute.funds_withdrawn",
                                object_id=du["id"], created=du["created"] + 5, account=None, actor=WEBHOOK) == "opened"
    db.commit()
    asked = []
    monkeypatch.setattr(disputes, "gateway", lambda: asked.append(1))
    assert disputes.apply_event(db, event_id="evt_old", event_type="charge.dispute.created", object_id=du["id"],
                                created=du["created"], account=None, actor=WEBHOOK) == "stale"
    assert asked == []
    assert steps.ours(db, du["id"]).last_event_created == du["created"] + 5


def test_the_poll_finds_a_dispute_whose_webhook_was_dropped(db, app, visit, later_by_hand, stripe_admin, sandbox,
                                                            live_server, queue, clock):
    paid = visit(happened=False)
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(drop=True)
    later_by_hand()
    assert sandbox.wait_for_webhooks(15)
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert db.scalar(select(StripeEvent.id).where(StripeEvent.object_id == du["id"])) is None   # never came
    assert steps.ours(db, du["id"]) is None

    result = dispute_jobs.poll()
    assert result["listed"] >= 1 and du["id"] not in result["failed"]
    row = steps.ours(db, du["id"])
    assert (row.status, row.appointment_id, row.amount_cents) == ("needs_response", paid.appointment.id, 12500)
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened"]
    assert "dispute_withdrawal" in steps.ledger_of(db, du["id"])

    dispute_jobs.poll()                                # again: nothing more
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened"]

    # Weeks later the bank decides; that webhook is lost too. The dispute is older than the poll's window,
    # but still open here: the poll reads it again.
    stripe_admin.client.v1.disputes.close(du["id"])
    clock.advance(timedelta(days=31))
    result = dispute_jobs.poll()
    assert result["rechecked"] >= 1 and du["id"] not in result["failed"]
    assert steps.ours(db, du["id"]).status == "lost"
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened", "dispute.lost"]


def test_a_lost_dispute_forfeits_the_providers_share_and_closes_the_ledger(db, visit, later_by_hand, stripe_admin,
                                                                           clock):
    from app.services import payouts

    paid = visit(happened=True)                        # completed: its money is final, the split is made
    later_by_hand()
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert apply(db, du) == "opened"
    assert payouts.make_splits(db, now=clock.now()) == 1
    db.commit()
    split = payouts.split_for_charge(db, paid.attempt.charge_id)
    assert split.dispute_hold                          # the provider's share is held while it is open

    stripe_admin.client.v1.disputes.close(du["id"])    # the clinic accepts it: lost at once
    closed = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert closed["status"] == "lost"
    assert apply(db, closed, event_type="charge.dispute.closed", event_id="evt_closed") == "lost"
    row = steps.ours(db, du["id"])
    assert row.status == "lost" and row.closed_at is not None and row.blocks_refund
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened", "dispute.lost"]
    entries = steps.ledger_of(db, du["id"])
    assert set(entries) == {"dispute_withdrawal", "dispute_lost"}
    lost = {account: cents for account, cents, _ in entries["dispute_lost"]}
    db.refresh(split)
    assert lost["disputes_open"] == -12500            # the open dispute's money is gone for good
    assert lost["provider_payable"] == split.provider_share_cents > 0     # wholly disputed: all of their share
    assert lost["dispute_losses"] == 12500 - split.provider_share_cents
    assert not split.dispute_hold
    assert payouts.target_cents(db, split) == 0       # nothing more moves to the provider


def test_a_dispute_first_seen_already_won_goes_through_every_step(db, visit, later_by_hand, stripe_admin,
                                                                   billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    stripe_admin.client.v1.disputes.update(du["id"], params={"evidence": {"uncategorized_text": "winning_evidence"}})
    later_by_hand()
    won = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert won["status"] == "won"
    assert apply(db, won, event_type="charge.dispute.closed") == "won"
    row = steps.ours(db, du["id"])
    assert row.status == "won" and row.submitted_evidence == {"uncategorized_text": "winning_evidence"}
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened", "dispute.submitted", "dispute.won"]
    assert set(steps.ledger_of(db, du["id"])) == {"dispute_withdrawal", "dispute_reinstatement"}
    assert db.scalar(select(func.count()).select_from(Notification)
                     .where(Notification.template.like("dispute_opened%"))) == 0   # nothing left to answer


def test_an_event_naming_a_dispute_stripe_does_not_have_is_ignored(app, db, client, sandbox, queue):
    import hashlib
    import hmac
    import json
    import time

    event = {"id": "evt_du_forged", "object": "event", "type": "charge.dispute.created", "created": int(time.time()),
             "data": {"object": {"id": "du_forged0000000", "object": "dispute", "status": "needs_response"}}}
    body = json.dumps(event).encode()
    t = str(int(time.time()))
    secret = app.config["SETTINGS"].STRIPE_WEBHOOK_SECRET
    sig = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": f"t={t},v1={sig}",
                                                                    "Content-Type": "application/json"})
    assert response.status_code == 200
    assert settlement.process_event(db, "evt_du_forged") == "ignored"
    assert db.scalar(select(func.count()).select_from(Dispute)) == 0
    db.expire_all()
    assert db.get(StripeEvent, "evt_du_forged").processed_at is not None
