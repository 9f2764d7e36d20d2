"""Splits and the payout hold (issue 16): the fee rule and the split's arithmetic; no transfer before the visit's
money is final (a deposit captured but the visit not completed, a post-visit charge not yet captured, a hybrid
visit not reconciled) nor before the hold ends; then one transfer per Stripe charge, with ``source_transaction``
and ``transfer_group``, the provider's share, in the provider's connected balance; every step on the
appointment's audit chain and in a balanced ledger."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from app.models import Appointment, CollectionCase
from app.services import audit_chain, payouts
from app.services.ledger_posting import pro_rata, round_half_up
from tests.payouts.helpers_money import (actions, after_hold, assert_ledger_balanced, balance_of, complete, connect,
                                         entries, group_at_stripe, paid_visit, payouts_hold, postings,
                                         split_of, tick, transfers_of)

CLINIC = SimpleNamespace(platform_fee_percent_bp=1000, platform_fee_fixed_cents=0)


# -- the arithmetic ----------------------------------------------------------------------------------------

def test_percent_rounds_half_up_and_adds_the_fixed_amount():
    rule = payouts.FeeRule(percent_bp=1250, fixed_cents=30, source="type")
    assert payouts.platform_fee(1000, rule) == 125 + 30
    assert payouts.platform_fee(1004, rule) == 126 + 30          # 125.5 -> 126 (half up, not to even)
    assert payouts.platform_fee(1003, rule) == 125 + 30          # 125.375 -> 125
    assert payouts.platform_fee(0, rule) == 0                    # nothing paid: no fee, not even the fixed one
    assert round_half_up(5, 2) == 3 and round_half_up(7, 2) == 4 and round_half_up(1, 3) == 0


def test_the_types_rule_else_the_clinics():
    assert payouts.rule_of(SimpleNamespace(platform_fee_percent_bp=None, platform_fee_fixed_cents=None),
                           CLINIC) == payouts.FeeRule(1000, 0, "clinic")
    assert payouts.rule_of(SimpleNamespace(platform_fee_percent_bp=None, platform_fee_fixed_cents=500),
                           CLINIC) == payouts.FeeRule(0, 500, "type")
    assert payouts.rule_of(SimpleNamespace(platform_fee_percent_bp=0, platform_fee_fixed_cents=None),
                           CLINIC) == payouts.FeeRule(0, 0, "type")      # a type may charge no fee at all


def test_the_split_is_gross_less_stripes_fee_less_the_platforms():
    rule = payouts.FeeRule(1000, 0, "clinic")
    assert payouts.split_for(12500, 393, rule) == payouts.SplitFigures(12500, 393, 1250, 10857)
    # G < F + P: the platform's fee is cut to what is left after Stripe's, the provider gets nothing
    assert payouts.split_for(600, 347, payouts.FeeRule(1000, 300, "type")) == payouts.SplitFigures(600, 347, 253, 0)
    # G < F (refunded nearly in full): no platform fee, no share
    assert payouts.split_for(200, 393, rule) == payouts.SplitFigures(200, 393, 0, 0)


def test_pro_rata_shares_round_half_up_within_what_is_left():
    assert pro_rata(10857, 2500, 12500, left=10857) == 2171          # 2171.4
    assert pro_rata(101, 1, 2, left=100) == 51                       # 50.5 -> 51
    assert pro_rata(101, 1, 2, left=40) == 40                        # never more than is left
    assert pro_rata(100, 0, 200, left=100) == 0 and pro_rata(100, 10, 0, left=100) == 0


# -- deposit-to-book: captured is not enough; the visit completed, then the hold ----------------------------

def test_no_transfer_before_the_visit_is_completed_nor_before_the_hold_ends(db, factories, clock, policy, sandbox,
                                                                            queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    account = connect(db, appointment.provider, clock, sandbox)
    tick(db, clock)
    assert split_of(db, appointment.id) is None                     # captured, but the visit is still to come
    assert group_at_stripe(sandbox, appointment.id, account) == []
    assert [t.kind for t in postings(db, appointment_id=appointment.id)] == ["charge"]

    clock.advance(timedelta(hours=3))
    complete(db, db.get(Appointment, appointment.id), clock)
    completed_at = clock.now()
    tick(db, clock)
    split = split_of(db, appointment.id)
    charge_txn = postings(db, appointment_id=appointment.id, kind="charge")[0]
    fee = entries(charge_txn)["stripe_fees"]
    assert (split.status, split.gross_cents, split.stripe_fee_cents, split.platform_fee_cents) == (
        "held", 12500, fee, 1250)
    assert split.provider_share_cents == 12500 - fee - 1250
    assert split.final_at == completed_at and split.hold_until == completed_at + payouts_hold(clock)
    assert split.stripe_charge_id == charge_txn.stripe_object_id and split.fee_rule["source"] == "clinic"
    assert group_at_stripe(sandbox, appointment.id, account) == []           # final, but the refund window is open

    clock.advance(payouts_hold(clock) - timedelta(minutes=1))
    tick(db, clock)
    assert group_at_stripe(sandbox, appointment.id, account) == [] and split_of(db, appointment.id).status == "held"

    clock.advance(timedelta(minutes=2))
    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    share = split.provider_share_cents
    assert (transfer.amount, transfer.currency, transfer.destination, transfer.source_transaction,
            transfer.transfer_group) == (share, "usd", account.stripe_account_id, split.stripe_charge_id,
                                         f"appointment_{appointment.id}")
    assert set(transfer.metadata.to_dict()) == {"transfer_uuid", "transfer_id", "split_id", "appointment_id",
                                                "provider_account_id"}
    assert all(v.replace("-", "").isalnum() for v in transfer.metadata.to_dict().values())   # opaque ids only
    assert balance_of(sandbox, account.stripe_account_id) == (0, share)   # pending until the charge's funds are

    split = split_of(db, appointment.id)
    [row] = transfers_of(db, split)
    assert (split.status, split.transferred_cents, row.status, row.stripe_transfer_id, row.kind) == (
        "transferred", share, "created", transfer.id, "share")
    tick(db, clock)                                                 # again: nothing more moves
    assert len(group_at_stripe(sandbox, appointment.id, account)) == 1

    kinds = [t.kind for t in postings(db, appointment_id=appointment.id)]
    assert kinds == ["charge", "split", "transfer"]
    moved = postings(db, kind="transfer", appointment_id=appointment.id)[0]
    assert entries(moved) == {"stripe_balance": -share, "provider_stripe": share}
    provider_entry = next(e for e in moved.entries if e.account == "provider_stripe")
    assert provider_entry.stripe_account_id == account.stripe_account_id
    assert provider_entry.balance_transaction_id.startswith("txn_")
    assert entries(postings(db, kind="split", appointment_id=appointment.id)[0]) == {
        "patient_payments": 12500, "stripe_fees": -fee, "platform_fees": -1250, "provider_payable": -share}
    assert actions(db, appointment.id) == ["payout.split_made", "payout.transfer_sent"]
    chain = audit_chain.build(db, db.get(Appointment, appointment.id))
    steps = [(s.stage, s.action, s.amount_cents) for s in chain.steps if s.stage == "payout"]
    assert steps == [("payout", "payout.split_made", share), ("payout", "payout.transfer_sent", share)]
    sent = next(s for s in chain.steps if s.action == "payout.transfer_sent")
    assert sent.stripe_id == transfer.id and "moved to their Stripe account" in sent.reason
    assert_ledger_balanced(db)


def test_a_type_with_its_own_fee_rule(db, factories, clock, policy, sandbox, queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox, price_cents=10000)
    appointment.type.platform_fee_percent_bp, appointment.type.platform_fee_fixed_cents = 550, 125
    db.commit()
    complete(db, db.get(Appointment, appointment.id), clock)
    tick(db, clock)
    split = split_of(db, appointment.id)
    assert split.platform_fee_cents == 550 + 125
    assert split.fee_rule == {"percent_bp": 550, "fixed_cents": 125, "source": "type", "purpose": "deposit"}
    assert split.provider_share_cents == 10000 - split.stripe_fee_cents - 675
    assert_ledger_balanced(db)


def test_a_visit_canceled_late_keeps_its_deposit_for_the_provider(db, factories, clock, policy, sandbox, queue):
    from app.services import booking, settlement
    from app.services.audit import Actor

    appointment = paid_visit(db, factories, clock, policy, sandbox)
    patient = appointment.patient
    booking.cancel(db, db.get(Appointment, appointment.id), actor=Actor("user", patient.user_id, "patient"),
                   now=clock.now(), reason="plans changed", by_user_id=patient.user_id)
    db.commit()
    tick(db, clock)
    assert split_of(db, appointment.id) is None                     # the cancellation policy has not decided yet
    assert settlement.refund_canceled_booking(db, appointment.id) == []   # late: the policy keeps it all
    tick(db, clock)
    split = split_of(db, appointment.id)
    assert (split.gross_cents, split.status) == (12500, "held") and split.provider_share_cents > 0
    assert_ledger_balanced(db)


def test_a_visit_the_clinic_canceled_is_refunded_in_full_and_its_split_forfeited(db, factories, clock, policy,
                                                                                sandbox, queue):
    from app.services import booking, settlement
    from app.services.audit import Actor

    appointment = paid_visit(db, factories, clock, policy, sandbox)
    account = connect(db, appointment.provider, clock, sandbox)
    admin = factories.user("admin")
    booking.cancel(db, db.get(Appointment, appointment.id), actor=Actor("user", admin.id, "admin"),
                   now=clock.now(), reason="the provider is unwell", by_user_id=admin.id)
    db.commit()
    assert settlement.refund_canceled_booking(db, appointment.id)   # canceled by the clinic: refunded in full
    tick(db, clock)
    split = split_of(db, appointment.id)
    assert (split.gross_cents, split.provider_share_cents, split.platform_fee_cents, split.status) == (
        0, 0, 0, "forfeited")
    after_hold(clock)
    tick(db, clock)
    assert group_at_stripe(sandbox, appointment.id, account) == []
    assert [t.kind for t in postings(db, appointment_id=appointment.id)] == ["charge", "refund", "split"]
    # Stripe kept its fee on the money given back: the split clears it to refund_losses
    fee = split.stripe_fee_cents
    assert entries(postings(db, appointment_id=appointment.id, kind="split")[0]) == {
        "stripe_fees": -fee, "refund_losses": fee}
    assert actions(db, appointment.id) == ["payout.split_made", "payout.forfeited"]
    assert_ledger_balanced(db)


# -- post-visit: the charge captured (its case paid) --------------------------------------------------------

def test_a_post_visit_charge_moves_only_once_captured(db, factories, clock, browser_pay, stripe_admin, sandbox,
                                                      queue, visit_settings):
    from app.jobs import visit_charges as visit_jobs
    from tests.postvisit.test_charging import TOTAL, signed_visit

    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin)
    appointment = db.get(Appointment, visit.appointment_id)
    account = connect(db, appointment.provider, clock, sandbox)
    after_hold(clock)
    tick(db, clock)
    assert split_of(db, visit.appointment_id, "visit") is None      # signed, not yet charged
    assert group_at_stripe(sandbox, visit.appointment_id, account) == []

    assert visit_jobs.charge_case(visit.case_id) == "confirmed"
    assert db.get(CollectionCase, visit.case_id).status == "paid"
    tick(db, clock)
    split = split_of(db, visit.appointment_id, "visit")
    assert (split.gross_cents, split.status, split.final_at) == (TOTAL, "held", clock.now())
    assert group_at_stripe(sandbox, visit.appointment_id, account) == []     # the hold starts when it was paid

    after_hold(clock)
    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, visit.appointment_id, account)
    assert (transfer.amount, transfer.source_transaction, transfer.destination) == (
        split.provider_share_cents, split.stripe_charge_id, account.stripe_account_id)
    assert_ledger_balanced(db)
