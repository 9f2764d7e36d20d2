"""A hybrid visit's money (issue 16): nothing moves until the claim is answered and the visit reconciled; then the
deposit and the balance are two Stripe charges, two splits and two transfers (each with its own
``source_transaction``); the insurer's payment, made to the clinic by bank, is posted for the clinic to settle
outside Connect. (The hybrid visit comes from tests/claims/conftest.py: a signed encounter, a captured deposit,
a claim to the payer simulator.)"""
from __future__ import annotations

from sqlalchemy import select

from app.models import Appointment, Charge, CollectionCase, Remittance
from app.services.ledger_posting import round_half_up
from tests.claims.conftest import claim_settings, hybrid_visit, new_member  # noqa: F401 (fixtures)
from tests.payouts.helpers_money import (after_hold, assert_ledger_balanced, connect, entries, group_at_stripe,
                                         postings, split_of, tick)


def test_a_hybrid_visit_moves_once_reconciled_one_transfer_per_charge(db, hybrid_visit, payer_sandbox, clock,
                                                                      sandbox, queue):
    from app.jobs import claims as claim_jobs
    from app.jobs import visit_charges as visit_jobs
    from tests.helpers.claims import answered

    visit = hybrid_visit("W100000666", deposit=3900)       # the payer pays less: a 14.00 balance
    appointment = db.get(Appointment, visit.appointment_id)
    account = connect(db, appointment.provider, clock, sandbox)
    after_hold(clock)
    tick(db, clock)
    assert split_of(db, visit.appointment_id) is None               # deposit captured, claim not answered
    answered(db, payer_sandbox, visit.claim_id)
    tick(db, clock)
    assert split_of(db, visit.appointment_id) is None               # answered, not yet reconciled

    assert claim_jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    tick(db, clock)
    deposit = split_of(db, visit.appointment_id)
    assert (deposit.gross_cents, deposit.status) == (3900, "held")
    assert split_of(db, visit.appointment_id, "balance") is None    # its charge not yet made
    balance = db.scalar(select(Charge).where(Charge.appointment_id == visit.appointment_id,
                                             Charge.purpose == "balance"))
    case = db.scalar(select(CollectionCase).where(CollectionCase.charge_id == balance.id))
    assert visit_jobs.charge_case(case.id) == "confirmed"
    tick(db, clock)
    assert split_of(db, visit.appointment_id, "balance").gross_cents == 1400

    after_hold(clock)
    tick(db, clock)
    at_stripe = sorted(group_at_stripe(sandbox, visit.appointment_id, account), key=lambda t: t.amount, reverse=True)
    splits = [split_of(db, visit.appointment_id), split_of(db, visit.appointment_id, "balance")]
    assert [(t.amount, t.source_transaction, t.destination) for t in at_stripe] == [
        (s.provider_share_cents, s.stripe_charge_id, account.stripe_account_id) for s in splits]
    assert len({t.source_transaction for t in at_stripe}) == 2      # one transfer per Stripe charge
    assert [s.status for s in splits] == ["transferred", "transferred"]
    # the insurer's payment (by bank, outside Stripe) is posted for the clinic to settle, not transferred
    [insurer] = postings(db, appointment_id=visit.appointment_id, kind="insurer_payment")
    paid = db.scalar(select(Remittance.paid_cents).where(Remittance.claim_id == visit.claim_id))
    assert paid > 0 and insurer.dedupe_key.startswith("insurer_payment:")
    assert entries(insurer) == {"insurer_payments": paid, "platform_fees": -round_half_up(paid * 1000, 10000),
                                "provider_payable_insurer": -(paid - round_half_up(paid * 1000, 10000))}
    assert_ledger_balanced(db)
