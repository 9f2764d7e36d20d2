"""Weekly payouts (issue 16): each enabled account's available balance is paid out once per ISO week
(``Stripe-Account``), the transfers it swept and their splits marked paid out; ``payout.paid`` (duplicated and
shuffled by the sandbox) marks it paid once; a failed payout is posted back; nothing available is nothing
paid; a crash after Stripe made the payout is finished once; the jobs are thin callers."""
from __future__ import annotations

import time

from sqlalchemy import select

from app.jobs import payouts as payout_jobs
from app.models import AuditEvent, ProviderPayout, ProviderTransfer, StripeEvent
from app.services import ledger, payouts, settlement
from app.services.audit import Actor
from tests.payouts.helpers_money import (actions, assert_ledger_balanced, balance_of, client, entries, postings,
                                         split_of, transferred_visit)

TWO_DAYS = 2 * 86400 + 60          # a card charge's funds (and the transfer's) are available 2 days later


def payouts_at_stripe(sandbox, account) -> list:
    return list(client(sandbox).v1.payouts.list(params={"limit": 100},
                                                options={"stripe_account": account.stripe_account_id}).data)


def the_payout(db) -> ProviderPayout:
    db.expire_all()
    [row] = db.scalars(select(ProviderPayout)).all()
    return row


def test_the_weekly_payout_pays_the_available_balance_and_payout_paid_marks_it_once(
        db, factories, clock, policy, sandbox, live_server, queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    share = split.provider_share_cents
    assert payouts.weekly_payouts(db, now=clock.now()) == {"nothing": 1}     # pending, not yet available
    db.execute(ProviderPayout.__table__.delete())                    # (a new week, for the test's sake)
    db.commit()
    sandbox.advance_clock(TWO_DAYS)
    assert balance_of(sandbox, account.stripe_account_id) == (share, 0)

    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=3, shuffle=True, max_attempts=1)
    assert payouts.weekly_payouts(db, now=clock.now()) == {"pending": 1}
    row = the_payout(db)
    [at_stripe] = payouts_at_stripe(sandbox, account)
    assert (row.status, row.amount_cents, row.stripe_payout_id, row.period) == (
        "pending", share, at_stripe.id, payouts.period_of(clock.now()))
    assert at_stripe.amount == share and set(at_stripe.metadata.to_dict()) == {
        "payout_uuid", "provider_payout_id", "provider_account_id", "period"}
    assert balance_of(sandbox, account.stripe_account_id) == (0, 0)
    [transfer] = db.scalars(select(ProviderTransfer)).all()
    assert transfer.payout_id == row.id and split_of(db, appointment.id).status == "paid_out"
    assert actions(db, appointment.id)[-1] == "payout.paid_out"
    [paid_out] = postings(db, kind="payout")
    assert entries(paid_out) == {"provider_stripe": -share, "provider_payable": share}
    assert ledger.balance(db, ledger.PROVIDER_PAYABLE, provider_id=split.provider_id) == 0   # all of it paid

    sandbox.advance_clock(30)                                        # the bank takes it: payout.paid
    assert sandbox.wait_for_webhooks(20)
    ids = list(db.scalars(select(StripeEvent.id).where(StripeEvent.type.startswith("payout."),
                                                       StripeEvent.object_id == row.stripe_payout_id)))
    assert len(ids) == 2                                             # created, paid: stored once each
    processed, failed = settlement.process_events(db)
    assert failed == []
    for event_id in reversed(ids):                                   # again, out of order: done already
        assert settlement.process_event(db, event_id) == "done"
    row = the_payout(db)
    assert row.status == "paid"
    paid = db.scalars(select(AuditEvent).where(AuditEvent.action == "payout.payout_paid")).all()
    assert len(paid) == 1 and paid[0].stripe_object_id == row.stripe_payout_id

    assert payouts.weekly_payouts(db, now=clock.now()) == {"paid": 1}   # once per account and week
    assert len(payouts_at_stripe(sandbox, account)) == 1
    assert_ledger_balanced(db)


def test_a_payout_the_bank_returns_is_posted_back_and_events_apply_in_order(db, factories, clock, policy, sandbox,
                                                                            queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox,
                                                    account_number="000111111116")
    sandbox.advance_clock(TWO_DAYS)
    assert payouts.weekly_payouts(db, now=clock.now()) == {"pending": 1}
    row = the_payout(db)
    sandbox.advance_clock(30)
    webhook = Actor.system("webhook")
    created = int(time.time())
    assert payouts.apply_payout_event(db, event_id="evt_failed", event_type="payout.failed",
                                      object_id=row.stripe_payout_id, created=created,
                                      account=account.stripe_account_id, actor=webhook) == "applied"
    db.commit()
    assert payouts.apply_payout_event(db, event_id="evt_older", event_type="payout.created",
                                      object_id=row.stripe_payout_id, created=created - 60,
                                      account=account.stripe_account_id, actor=webhook) == "stale"
    assert payouts.apply_payout_event(db, event_id="evt_again", event_type="payout.failed",
                                      object_id=row.stripe_payout_id, created=created,
                                      account=account.stripe_account_id, actor=webhook) == "unchanged"
    assert payouts.apply_payout_event(db, event_id="evt_other", event_type="payout.paid", object_id="po_notours",
                                      created=created, account=account.stripe_account_id, actor=webhook) == "ignored"
    db.commit()
    row = the_payout(db)
    assert (row.status, row.failure_code) == ("failed", "no_account")
    share = split.provider_share_cents
    [back] = postings(db, kind="payout_failed")
    assert entries(back) == {"provider_stripe": share, "provider_payable": -share}
    assert balance_of(sandbox, account.stripe_account_id) == (share, 0)     # the money is back
    assert ledger.balance(db, ledger.PROVIDER_PAYABLE, provider_id=split.provider_id) == -share
    assert len(db.scalars(select(AuditEvent).where(AuditEvent.action == "payout.payout_failed")).all()) == 1
    assert_ledger_balanced(db)


def test_nothing_available_is_nothing_paid(db, factories, clock, policy, sandbox, queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    assert payouts.weekly_payouts(db, now=clock.now()) == {"nothing": 1}
    assert the_payout(db).status == "nothing" and payouts_at_stripe(sandbox, account) == []
    assert split_of(db, appointment.id).status == "transferred"


def test_a_crash_after_stripe_made_the_payout_is_finished_once(db, factories, clock, policy, sandbox, queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    sandbox.advance_clock(TWO_DAYS)
    sandbox.inject_faults("drop_after", count=3, path="/v1/payouts", method="POST")
    sandbox.inject_faults("error_before", count=3, path="/v1/payouts", method="GET")
    assert payouts.weekly_payouts(db, now=clock.now()) == {"creating": 1}
    sandbox.reset_faults()
    row = the_payout(db)
    assert (row.status, row.amount_cents, row.stripe_payout_id) == ("creating", split.provider_share_cents, None)
    assert len(payouts_at_stripe(sandbox, account)) == 1             # Stripe made it

    assert payouts.weekly_payouts(db, now=clock.now()) == {"pending": 1}
    [at_stripe] = payouts_at_stripe(sandbox, account)
    assert the_payout(db).stripe_payout_id == at_stripe.id
    assert len(postings(db, kind="payout")) == 1
    assert_ledger_balanced(db)


def test_the_jobs_are_thin_callers(app, db, factories, clock, policy, sandbox, queue):
    from app.jobs import set_app
    from tests.payouts.helpers_money import after_hold, complete, connect, paid_visit

    set_app(app)
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    account = connect(db, appointment.provider, clock, sandbox)
    from app.models import Appointment

    complete(db, db.get(Appointment, appointment.id), clock)
    assert payout_jobs.tick()["splits"] == 1
    after_hold(clock)
    assert payout_jobs.tick()["sent"]["transfers"] == 1
    assert payout_jobs.send_pending() == {"reversals": 0, "transfers": 0, "failed": 0, "waiting": 0}
    assert payout_jobs.weekly_payouts() == {"nothing": 1}
    db.expire_all()
    assert split_of(db, appointment.id).status == "transferred" and account.status == "enabled"
