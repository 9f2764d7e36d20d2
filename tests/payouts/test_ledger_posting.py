"""The ledger's postings for money in and out (issue 16), and the catch-up that finishes them after a crash:
a captured charge, a refund at Stripe, a refund that fails later (mirrored, posted back, and the provider's
reversed share transferred again), a written-off balance; each posted once, with Stripe's balance transaction
ids, and every transaction balanced."""
from __future__ import annotations

from sqlalchemy import select

from app.models import Appointment, Charge, CollectionCase, LedgerTransaction, Refund
from app.services import ledger_posting, visit_charges
from app.services.audit import Actor
from app.services.gateway import gateway
from tests.payouts.helpers_money import (actions, after_hold, assert_ledger_balanced, client, connect, deposit_of,
                                         entries, group_at_stripe, paid_visit, postings, refund, split_of, tick,
                                         transfers_of)


def test_a_captured_charge_is_posted_once_from_its_balance_transaction(db, factories, clock, policy, sandbox,
                                                                      queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    assert postings(db) == []                                       # captured, and the process died here
    assert ledger_posting.catch_up(db, gateway(), now=clock.now()) == {"charge": 1}
    db.commit()
    assert ledger_posting.catch_up(db, gateway(), now=clock.now()) == {}
    db.commit()
    [posted] = postings(db)
    charge = deposit_of(db, appointment.id)
    intent = client(sandbox).v1.payment_intents.retrieve(
        charge.attempts[0].stripe_payment_intent_id, params={"expand": ["latest_charge.balance_transaction"]})
    bt = intent.latest_charge.balance_transaction
    assert (posted.kind, posted.dedupe_key, posted.charge_id, posted.appointment_id) == (
        "charge", f"charge:{intent.latest_charge.id}", charge.id, appointment.id)
    assert entries(posted) == {"stripe_balance": bt.net, "stripe_fees": bt.fee, "patient_payments": -12500}
    assert {e.balance_transaction_id for e in posted.entries if e.account != "patient_payments"} == {bt.id}
    assert_ledger_balanced(db)


def test_a_refund_at_stripe_is_posted_once_before_the_split(db, factories, clock, policy, sandbox, queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    made = refund(db, deposit_of(db, appointment.id), 2000)
    tick(db, clock)
    tick(db, clock)
    [posted] = postings(db, kind="refund")
    at_stripe = client(sandbox).v1.refunds.retrieve(db.get(Refund, made.id).stripe_refund_id)
    assert posted.dedupe_key == f"refund:{at_stripe.id}" and posted.refund_id == made.id
    assert entries(posted) == {"stripe_balance": -2000, "patient_payments": 2000}
    assert [e.balance_transaction_id for e in posted.entries if e.account == "stripe_balance"] == [
        at_stripe.balance_transaction]
    assert_ledger_balanced(db)


def test_a_refund_that_fails_later_is_posted_back_and_the_share_transferred_again(
        db, factories, clock, browser_pay, stripe_admin, sandbox, queue):
    from app.jobs import visit_charges as visit_jobs
    from tests.postvisit.test_charging import TOTAL, signed_visit

    sandbox.set_later(600)                                          # the refund fails when the clock says so
    try:
        visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, "4000000000005126")
        appointment = db.get(Appointment, visit.appointment_id)
        account = connect(db, appointment.provider, clock, sandbox)
        assert visit_jobs.charge_case(visit.case_id) == "confirmed"
        tick(db, clock)
        after_hold(clock)
        tick(db, clock)
        split = split_of(db, visit.appointment_id, "visit")
        assert split.status == "transferred" and split.gross_cents == TOTAL
        made = refund(db, db.get(Charge, visit.charge_id), 3000)
        assert db.get(Refund, made.id).status == "succeeded"
        tick(db, clock)
        s_r = entries(postings(db, kind="refund")[0])["provider_payable"]
        [transfer] = group_at_stripe(sandbox, visit.appointment_id, account)
        assert transfer.amount_reversed == s_r > 0

        sandbox.advance_clock(601)                                  # the card's issuer sends it back
        tick(db, clock)
        refund_row = db.get(Refund, made.id)
        assert refund_row.status == "failed" and db.get(Charge, visit.charge_id).amount_refunded_cents == 0
        [refunded] = postings(db, kind="refund")
        [failed] = postings(db, kind="refund_failed")
        assert entries(failed) == {k: -v for k, v in entries(refunded).items()}
        at_stripe = client(sandbox).v1.refunds.retrieve(refund_row.stripe_refund_id)
        assert [e.balance_transaction_id for e in failed.entries if e.account == "stripe_balance"] == [
            at_stripe.failure_balance_transaction]
        # the provider's share of the refund that never happened is theirs again
        rows = transfers_of(db, split_of(db, visit.appointment_id, "visit"))
        assert [(t.kind, t.amount_cents, t.status) for t in rows] == [
            ("share", split.provider_share_cents, "created"), ("reinstated", s_r, "created")]
        assert actions(db, visit.appointment_id, "refund.")[-1] == "refund.failed"
        tick(db, clock)
        assert len(group_at_stripe(sandbox, visit.appointment_id, account)) == 2
        assert_ledger_balanced(db)
    finally:
        sandbox.set_later(3)


def test_a_written_off_balance_is_posted_as_a_memo_pair(db, factories, clock, browser_pay, stripe_admin, sandbox,
                                                        queue):
    from app.jobs import visit_charges as visit_jobs
    from tests.postvisit.test_charging import TOTAL, signed_visit

    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, number=None)
    assert visit_jobs.charge_case(visit.case_id) == "no_card"
    billing = factories.user("billing")
    visit_charges.write_off(db, db.get(CollectionCase, visit.case_id), reason="hardship", approver=billing,
                            actor=Actor.of(billing), now=clock.now())
    db.commit()
    tick(db, clock)
    tick(db, clock)
    [posted] = postings(db, kind="write_off")
    assert posted.dedupe_key == f"write_off:{visit.case_id}" and posted.appointment_id == visit.appointment_id
    assert entries(posted) == {"write_offs": TOTAL, "uncollected": -TOTAL}
    assert db.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "split")) is None   # nothing paid
    assert_ledger_balanced(db)
