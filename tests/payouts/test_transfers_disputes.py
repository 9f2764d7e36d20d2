"""Disputes' effect on the provider (issue 16), the interface app/services/disputes.py calls, driven here with
Dispute rows inserted directly (the disputes service's own tests drive it from Stripe's disputes): opened ->
a share not yet transferred is held, a transferred one is reversed at once (pro rata); won -> transferred
(again); lost -> nothing more moves, the share is forfeited and the ledger posts ``dispute_lost``."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from app.models import Appointment, Dispute, ProviderTransfer, TransferReversal
from app.services import ledger, payouts
from app.services.audit import Actor
from app.services.ledger import Entry
from app.services.ledger_posting import pro_rata
from tests.payouts.helpers_money import (actions, after_hold, assert_ledger_balanced, balance_of, complete, connect,
                                         deposit_of, entries, group_at_stripe, held_visit, paid_visit, postings,
                                         split_of, tick, transferred_visit, transfers_of)

WEBHOOK = Actor.system("webhook")
DISPUTE_FEE = 1500


def disputed(db, split, amount: int, *, status: str = "needs_response") -> Dispute:
    """A dispute of the split's charge as the disputes service stores it, and its withdrawal posted."""
    dispute = Dispute(stripe_dispute_id=f"du_test_{uuid.uuid4().hex[:16]}", stripe_charge_id=split.stripe_charge_id,
                      charge_id=split.charge_id, appointment_id=split.appointment_id, amount_cents=amount,
                      currency="usd", reason="fraudulent", status=status, evidence={}, approved=[])
    db.add(dispute)
    db.flush()
    bt = f"txn_dispute_{dispute.id}"               # the withdrawal's balance transaction, as disputes.py posts it
    ledger.post(db, kind="dispute_withdrawal", dedupe_key=f"dispute_withdrawal:{dispute.stripe_dispute_id}",
                occurred_at=split.final_at, stripe_object_id=dispute.stripe_dispute_id,
                appointment_id=split.appointment_id, charge_id=split.charge_id, dispute_id=dispute.id,
                entries=[Entry(ledger.STRIPE_BALANCE, -(amount + DISPUTE_FEE), balance_transaction_id=bt),
                         Entry(ledger.DISPUTE_FEES, DISPUTE_FEE, balance_transaction_id=bt),
                         Entry(ledger.DISPUTES_OPEN, amount)])
    return dispute


def decide(db, dispute, status, clock):
    dispute = db.get(Dispute, dispute.id)
    dispute.status = status
    {"won": payouts.dispute_won, "lost": payouts.dispute_lost}[status](db, dispute, now=clock.now(), actor=WEBHOOK)
    db.commit()


def test_opened_after_the_transfer_reverses_the_share_at_once_and_a_win_transfers_it_again(
        db, factories, clock, policy, sandbox, queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    share = split.provider_share_cents
    dispute = disputed(db, split, 12500)
    payouts.dispute_opened(db, dispute, now=clock.now(), actor=WEBHOOK)
    db.commit()
    split = split_of(db, appointment.id)
    [reversal] = db.scalars(select(TransferReversal)).all()
    assert split.dispute_hold and (reversal.reason, reversal.dispute_id, reversal.amount_cents, reversal.status) == (
        "dispute", dispute.id, share, "creating")
    assert payouts.send_pending(db, now=clock.now())["reversals"] == 1
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    assert transfer.amount_reversed == share
    assert balance_of(sandbox, account.stripe_account_id) == (0, 0)
    assert split_of(db, appointment.id).status == "reversed"
    tick(db, clock)                                                 # held: nothing moves back
    assert len(group_at_stripe(sandbox, appointment.id, account)) == 1

    decide(db, dispute, "won", clock)
    [original, again] = transfers_of(db, split_of(db, appointment.id))
    assert (again.kind, again.amount_cents, again.status) == ("reinstated", share, "creating")
    tick(db, clock)
    at_stripe = group_at_stripe(sandbox, appointment.id, account)
    assert sorted((t.amount, t.amount_reversed) for t in at_stripe) == [(share, 0), (share, share)]
    assert balance_of(sandbox, account.stripe_account_id) == (0, share)
    split = split_of(db, appointment.id)
    assert (split.status, split.dispute_hold, split.outstanding_cents) == ("transferred", False, share)
    assert actions(db, appointment.id) == ["payout.split_made", "payout.transfer_sent", "payout.dispute_hold",
                                           "payout.reversed", "payout.dispute_released", "payout.transfer_sent"]
    assert [t.kind for t in postings(db, appointment_id=appointment.id) if t.kind in ("transfer", "reversal")] == [
        "transfer", "reversal", "transfer"]
    assert_ledger_balanced(db)


def test_opened_while_held_holds_the_share_and_a_loss_forfeits_it(db, factories, clock, policy, sandbox, queue):
    appointment, account, split = held_visit(db, factories, clock, policy, sandbox)
    dispute = disputed(db, split, 12500)
    payouts.dispute_opened(db, dispute, now=clock.now(), actor=WEBHOOK)
    db.commit()
    assert db.scalars(select(TransferReversal)).all() == []         # nothing moved: nothing to pull back
    after_hold(clock)
    tick(db, clock)
    assert group_at_stripe(sandbox, appointment.id, account) == []  # the dispute holds it past the refund window

    decide(db, dispute, "lost", clock)
    split = split_of(db, appointment.id)
    assert (split.status, split.dispute_hold) == ("forfeited", False)
    [lost] = postings(db, appointment_id=appointment.id, kind="dispute_lost")
    share = split.provider_share_cents
    assert entries(lost) == {"disputes_open": -12500, "provider_payable": share, "dispute_losses": 12500 - share}
    tick(db, clock)
    assert group_at_stripe(sandbox, appointment.id, account) == []  # nothing more moves
    assert actions(db, appointment.id) == ["payout.split_made", "payout.dispute_hold", "payout.dispute_lost",
                                           "payout.forfeited"]
    assert_ledger_balanced(db)


def test_a_partial_dispute_lost_after_the_transfer_pulls_back_only_its_share(db, factories, clock, policy, sandbox,
                                                                             queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    share = split.provider_share_cents
    s_d = pro_rata(share, 5000, split.gross_cents, left=share)
    dispute = disputed(db, split, 5000)
    payouts.dispute_opened(db, dispute, now=clock.now(), actor=WEBHOOK)
    db.commit()
    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    assert transfer.amount_reversed == s_d

    decide(db, dispute, "lost", clock)
    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)   # no new transfer, no second reversal
    assert transfer.amount_reversed == s_d
    split = split_of(db, appointment.id)
    assert (split.status, split.outstanding_cents, split.dispute_hold) == ("transferred", share - s_d, False)
    [lost] = postings(db, appointment_id=appointment.id, kind="dispute_lost")
    assert entries(lost) == {"disputes_open": -5000, "provider_payable": s_d, "dispute_losses": 5000 - s_d}
    assert_ledger_balanced(db)


def test_a_dispute_before_the_money_is_final_holds_the_split_when_it_is_made(db, factories, clock, policy, sandbox,
                                                                             queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    account = connect(db, appointment.provider, clock, sandbox)
    tick(db, clock)                                                 # the charge is posted; no split yet
    charge = deposit_of(db, appointment.id)
    dispute = Dispute(stripe_dispute_id=f"du_test_{uuid.uuid4().hex[:16]}",
                      stripe_charge_id=postings(db, kind="charge")[0].stripe_object_id, charge_id=charge.id,
                      appointment_id=appointment.id, amount_cents=12500, currency="usd", reason="fraudulent",
                      status="needs_response", evidence={}, approved=[])
    db.add(dispute)
    db.flush()
    payouts.dispute_opened(db, dispute, now=clock.now(), actor=WEBHOOK)     # no split yet: nothing to do
    db.commit()
    complete(db, db.get(Appointment, appointment.id), clock)
    tick(db, clock)
    split = split_of(db, appointment.id)
    assert split.dispute_hold and split.status == "held"
    after_hold(clock)
    tick(db, clock)
    assert group_at_stripe(sandbox, appointment.id, account) == []
    assert db.scalars(select(ProviderTransfer)).all() == []
    assert_ledger_balanced(db)
