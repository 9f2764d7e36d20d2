"""Transfers and reversals (issue 16): a partial refund after the transfer pulls the provider's pro-rata share back
(at Stripe and in the ledger); a refund during the hold makes the transfer smaller instead; a provider without an
enabled account accrues and is paid on the first tick after onboarding; a crash after Stripe made the transfer is
finished by the next tick, once; a transfer Stripe refuses is failed with its reason and not retried blindly; a
payment plan's instalments are one transfer per Stripe charge."""
from __future__ import annotations

from sqlalchemy import select

from app.models import AuditEvent, Appointment, CollectionCase, ProviderTransfer, TransferReversal
from app.services import payouts
from app.services.ledger_posting import pro_rata
from tests.payouts.helpers_money import (actions, after_hold, assert_ledger_balanced, balance_of, client, complete,
                                         connect, deposit_of, entries, group_at_stripe, held_visit, paid_visit,
                                         postings, refund, split_of, tick, transferred_visit, transfers_of)


def test_a_partial_refund_after_the_transfer_reverses_the_providers_share_of_it(db, factories, clock, policy,
                                                                                sandbox, queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    share, gross = split.provider_share_cents, split.gross_cents
    refund(db, deposit_of(db, appointment.id), 2500)
    tick(db, clock)

    s_r = pro_rata(share, 2500, gross, left=share)                  # S x R / G, half up
    p_r = pro_rata(split.platform_fee_cents, 2500, gross, left=split.platform_fee_cents)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    assert transfer.amount == share and transfer.amount_reversed == s_r
    [reversal] = client(sandbox).v1.transfers.reversals.list(transfer.id).data
    assert reversal.amount == s_r and set(reversal.metadata.to_dict()) == {
        "reversal_uuid", "reversal_id", "split_id", "appointment_id", "reason"}
    assert balance_of(sandbox, account.stripe_account_id) == (0, share - s_r)

    split = split_of(db, appointment.id)
    assert (split.status, split.transferred_cents, split.reversed_cents) == ("transferred", share, s_r)
    [row] = db.scalars(select(TransferReversal)).all()
    assert (row.reason, row.amount_cents, row.status, row.stripe_reversal_id) == ("refund", s_r, "created", reversal.id)
    [refunded] = postings(db, appointment_id=appointment.id, kind="refund")
    assert entries(refunded) == {"stripe_balance": -2500, "provider_payable": s_r, "platform_fees": p_r,
                                 "refund_losses": 2500 - s_r - p_r}
    [reversed_] = postings(db, appointment_id=appointment.id, kind="reversal")
    assert entries(reversed_) == {"stripe_balance": s_r, "provider_stripe": -s_r}
    assert reversed_.stripe_object_id == reversal.id and reversed_.refund_id == row.refund_id
    assert actions(db, appointment.id) == ["payout.split_made", "payout.transfer_sent", "payout.reversed"]

    tick(db, clock)                                                 # again: nothing more is pulled back
    assert len(client(sandbox).v1.transfers.reversals.list(transfer.id).data) == 1
    assert_ledger_balanced(db)


def test_a_refund_in_full_after_the_transfer_reverses_all_of_it(db, factories, clock, policy, sandbox, queue):
    appointment, account, split = transferred_visit(db, factories, clock, policy, sandbox)
    refund(db, deposit_of(db, appointment.id), 12500)
    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    assert transfer.amount_reversed == transfer.amount == split.provider_share_cents and transfer.reversed
    split = split_of(db, appointment.id)
    assert (split.status, split.outstanding_cents) == ("reversed", 0)
    assert balance_of(sandbox, account.stripe_account_id) == (0, 0)
    assert_ledger_balanced(db)


def test_a_refund_during_the_hold_makes_the_transfer_smaller(db, factories, clock, policy, sandbox, queue):
    appointment, account, split = held_visit(db, factories, clock, policy, sandbox)
    refund(db, deposit_of(db, appointment.id), 5000)
    after_hold(clock)
    tick(db, clock)
    s_r = pro_rata(split.provider_share_cents, 5000, split.gross_cents, left=split.provider_share_cents)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    assert (transfer.amount, transfer.amount_reversed) == (split.provider_share_cents - s_r, 0)
    assert db.scalars(select(TransferReversal)).all() == []
    assert_ledger_balanced(db)


def test_a_provider_without_an_account_accrues_then_is_paid_once_onboarded(db, factories, clock, policy, sandbox,
                                                                           queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    complete(db, db.get(Appointment, appointment.id), clock)
    tick(db, clock)
    after_hold(clock)
    tick(db, clock)
    split = split_of(db, appointment.id)
    assert (split.status, transfers_of(db, split)) == ("held", [])   # no account: accrued

    account = connect(db, appointment.provider, clock, sandbox, onboard=False)
    tick(db, clock)
    assert (account.status, transfers_of(db, split_of(db, appointment.id))) == ("onboarding", [])   # not enabled

    connect(db, appointment.provider, clock, sandbox)               # onboarding finished: enabled
    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)
    assert transfer.amount == split.provider_share_cents
    tick(db, clock)
    assert len(group_at_stripe(sandbox, appointment.id, account)) == 1
    assert split_of(db, appointment.id).status == "transferred"
    assert_ledger_balanced(db)


def test_a_crash_after_stripe_made_the_transfer_is_finished_by_the_next_tick_once(db, factories, clock, policy,
                                                                                 sandbox, queue):
    appointment, account, _ = held_visit(db, factories, clock, policy, sandbox)
    after_hold(clock)
    # Stripe makes the transfer but the answer never comes back (each try of the SDK); finding it by our
    # metadata fails too: the tick ends with the row still ``creating``, as after a crash.
    sandbox.inject_faults("drop_after", count=3, path="/v1/transfers", method="POST")
    sandbox.inject_faults("error_before", count=3, path="/v1/transfers", method="GET")
    tick(db, clock)
    sandbox.reset_faults()
    split = split_of(db, appointment.id)
    [row] = transfers_of(db, split)
    assert (row.status, row.stripe_transfer_id, split.status) == ("creating", None, "held")
    assert len(group_at_stripe(sandbox, appointment.id, account)) == 1      # Stripe did it

    tick(db, clock)
    [transfer] = group_at_stripe(sandbox, appointment.id, account)          # still one
    [row] = transfers_of(db, split_of(db, appointment.id))
    assert (row.status, row.stripe_transfer_id, row.amount_cents) == ("created", transfer.id, transfer.amount)
    assert transfer.metadata["transfer_uuid"] == str(row.uuid)
    assert split_of(db, appointment.id).status == "transferred"
    assert len(postings(db, appointment_id=appointment.id, kind="transfer")) == 1
    assert actions(db, appointment.id) == ["payout.split_made", "payout.transfer_sent"]
    assert_ledger_balanced(db)


def test_a_transfer_stripe_refuses_is_failed_with_its_reason_and_not_retried(db, factories, clock, policy, sandbox,
                                                                             queue):
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    account = connect(db, appointment.provider, clock, sandbox, onboard=False)
    account.status = "enabled"          # our row says enabled, Stripe's account cannot receive transfers yet
    db.commit()
    complete(db, db.get(Appointment, appointment.id), clock)
    tick(db, clock)
    after_hold(clock)
    tick(db, clock)
    [row] = transfers_of(db, split_of(db, appointment.id))
    assert row.status == "failed" and "insufficient_capabilities_for_transfer" in row.failure
    [failed] = db.scalars(select(AuditEvent).where(AuditEvent.action == "payout.transfer_failed")).all()
    assert failed.appointment_id == appointment.id and failed.outcome == "failure"
    assert "Stripe refused" in failed.reason
    tick(db, clock)
    assert len(transfers_of(db, split_of(db, appointment.id))) == 1  # not sent again blindly
    assert split_of(db, appointment.id).status == "held"
    assert_ledger_balanced(db)


def test_a_payment_plan_is_one_transfer_per_stripe_charge(db, factories, clock, browser_pay, stripe_admin, sandbox,
                                                          queue, visit_settings):
    from app.jobs import visit_charges as visit_jobs
    from app.services import visit_charges
    from app.services.audit import Actor
    from tests.helpers.payments import attach_card
    from tests.postvisit.test_charging import PLAN_INTERVAL, SCHEDULE, TOTAL, signed_visit

    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin)
    sandbox.mark_card_lost(visit.card)
    assert visit_jobs.charge_case(visit.case_id) == "declined"
    clock.advance(SCHEDULE[-1])
    assert visit_jobs.case_due(visit.case_id) == "collections"
    db.get(Appointment, visit.appointment_id).payment_method_id = attach_card(browser_pay, stripe_admin,
                                                                              visit.customer)
    db.commit()
    billing = factories.user("billing")
    visit_charges.start_plan(db, db.get(CollectionCase, visit.case_id), instalments=3, actor=Actor.of(billing),
                             now=clock.now())
    db.commit()
    account = connect(db, db.get(Appointment, visit.appointment_id).provider, clock, sandbox)
    for _ in range(3):
        assert visit_jobs.case_due(visit.case_id) == "confirmed"
        tick(db, clock)
        if db.get(CollectionCase, visit.case_id).status != "paid":
            assert split_of(db, visit.appointment_id, "visit") is None     # a plan under way is not final
        clock.advance(PLAN_INTERVAL)
    split = split_of(db, visit.appointment_id, "visit")
    assert split.gross_cents == TOTAL
    after_hold(clock)
    tick(db, clock)
    at_stripe = group_at_stripe(sandbox, visit.appointment_id, account)
    assert len(at_stripe) == 3 and len({t.source_transaction for t in at_stripe}) == 3
    assert sum(t.amount for t in at_stripe) == split.provider_share_cents
    assert split_of(db, visit.appointment_id, "visit").status == "transferred"
    assert len(postings(db, appointment_id=visit.appointment_id, kind="charge")) == 3
    assert_ledger_balanced(db)


def test_transfers_due_and_send_pending_finish_stored_rows(db, factories, clock, policy, sandbox, queue):
    appointment, account, split = held_visit(db, factories, clock, policy, sandbox)
    after_hold(clock)
    payouts.plan(db, split, now=clock.now())                        # stored, not sent (a crash before Stripe)
    db.commit()
    [row] = db.scalars(select(ProviderTransfer)).all()
    assert payouts.due_transfers(db) == [row.id] and row.status == "creating"
    assert payouts.send_pending(db, now=clock.now())["transfers"] == 1
    assert payouts.send_transfer(db, row.id, now=clock.now()) == "created"    # a second send: nothing more
    assert len(group_at_stripe(sandbox, appointment.id, account)) == 1
    assert_ledger_balanced(db)
