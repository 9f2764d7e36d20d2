"""A hybrid visit after the insurer's answer, through the payer simulator and the Stripe sandbox: each
remittance shape ends the way the patient should see it (a partial refund of the deposit, a balance
charged off-session, nothing), CO denials are written off and never charged, PR-204 is the patient's
and explained, a secondary plan is billed before the patient, and every answer is applied once."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.jobs import claims as jobs
from app.jobs import visit_charges as charge_jobs
from app.models import AuditEvent, Charge, Claim, CollectionCase, Refund, Remittance
from app.services import claims
from tests.claims.conftest import PRICE
from tests.helpers.claims import answered, reconciliation_of
from tests.helpers.payments import fresh


def balance_charge(db, appointment_id) -> Charge | None:
    db.expire_all()
    return db.scalar(select(Charge).where(Charge.appointment_id == appointment_id, Charge.purpose == "balance"))


def actions(db, appointment_id, prefix=""):
    return [a for a in db.scalars(select(AuditEvent.action).where(AuditEvent.appointment_id == appointment_id)
                                  .order_by(AuditEvent.seq)) if a.startswith(prefix)]


def test_the_deposit_covers_the_share_exactly_nothing_moves(db, hybrid_visit, payer_sandbox, stripe_admin):
    visit = hybrid_visit("W100000003", deposit=3900)          # copay 25.00 + 20% of 70.00 = 39.00
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "none"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.paid_cents, row.difference_cents, row.insurance_paid_cents,
            row.written_off_cents) == (3900, 3900, 0, 5600, 5500)
    assert "your copay" in row.explanation and "your coinsurance" in row.explanation
    assert fresh(db, Claim, visit.claim_id).status == "reconciled"
    assert balance_charge(db, visit.appointment_id) is None
    assert db.scalar(select(func.count()).select_from(Refund)) == 0
    remittance = db.scalar(select(Remittance).where(Remittance.claim_id == visit.claim_id))
    labels = [claims.adjustment_label(a) for a in remittance.lines[0]["adjustments"]]
    assert sorted(labels) == ["CO-45 contractual $55.00", "PR-2 coinsurance $14.00", "PR-3 copay $25.00"]
    # reconciled once: a second run finds the row
    assert jobs.reconcile_visit(visit.appointment_id) == "none"
    assert actions(db, visit.appointment_id, "reconciliation.") == ["reconciliation.decided"]


def test_the_payer_pays_more_than_estimated_part_of_the_deposit_is_refunded(db, hybrid_visit, payer_sandbox,
                                                                            stripe_admin):
    visit = hybrid_visit("W100000777", deposit=3900)          # adjudicated at 0%: only the copay, 25.00
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "refund"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.difference_cents) == (2500, -1400)
    refund = db.get(Refund, row.refund_id)
    assert (refund.amount_cents, refund.policy, refund.stripe_reason, refund.status) == (
        1400, "overpayment", "requested_by_customer", "creating")
    assert jobs.send_refund(refund.id) in ("pending", "succeeded")
    refund = fresh(db, Refund, refund.id)
    at_stripe = stripe_admin.client.v1.refunds.retrieve(refund.stripe_refund_id)
    assert (at_stripe.amount, at_stripe.payment_intent, at_stripe.reason) == (
        1400, visit.deposit_intent, "requested_by_customer")
    assert balance_charge(db, visit.appointment_id) is None
    assert "refunded to your card" in row.explanation


def test_the_payer_pays_less_than_estimated_the_balance_is_charged_off_session(db, hybrid_visit, payer_sandbox,
                                                                             stripe_admin):
    visit = hybrid_visit("W100000666", deposit=3900)          # adjudicated at 40%: 25.00 + 28.00 = 53.00
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    row = reconciliation_of(db, visit.appointment_id)
    charge = balance_charge(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.difference_cents, row.balance_charge_id, charge.amount_cents) == (
        5300, 1400, charge.id, 1400)
    case = db.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))
    assert charge_jobs.charge_case(case.id) == "confirmed"
    case = fresh(db, CollectionCase, case.id)
    assert case.status == "paid"
    intents = [i for i in stripe_admin.intents_of(visit.customer) if i.id != visit.deposit_intent]
    assert [(i.amount, i.status, i.payment_method) for i in intents] == [(1400, "succeeded", visit.card)]
    assert "charged to your card on file" in row.explanation


def test_without_the_patients_consent_the_balance_is_never_charged_off_session(db, hybrid_visit, payer_sandbox,
                                                                              stripe_admin):
    """A deposit paid without our consent step (confirmed outside the checkout page) leaves no
    consent to a later charge: the balance goes to the patient's pay link, not to the card."""
    visit = hybrid_visit("W100000666", deposit=3900, consent=False)
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    charge = balance_charge(db, visit.appointment_id)
    case = db.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))
    assert charge_jobs.charge_case(case.id) == "no_card"
    case = fresh(db, CollectionCase, case.id)
    assert (case.status, case.failure_kind) == ("recovering", "no_card") and case.link_sent_at is not None
    assert [i.id for i in stripe_admin.intents_of(visit.customer)] == [visit.deposit_intent]


def test_a_deductible_partly_met_leaves_a_balance(db, hybrid_visit, payer_sandbox):
    visit = hybrid_visit("W100000001", deposit=4000)          # copay 25.00 + deductible 70.00
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.difference_cents) == (9500, 5500)
    assert "your deductible" in row.explanation


def test_near_the_out_of_pocket_maximum_the_share_is_capped_and_the_rest_refunded(db, hybrid_visit, payer_sandbox):
    visit = hybrid_visit("OOP-30-SHORT", deposit=3900)        # 30.00 left: copay 25.00 + coinsurance cut to 5.00
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "refund"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.difference_cents, row.insurance_paid_cents) == (3000, -900, 6500)


def test_pr_204_is_the_patients_charged_and_explained(db, hybrid_visit, payer_sandbox):
    visit = hybrid_visit("W100000204", deposit=3900)
    answered(db, payer_sandbox, visit.claim_id)
    assert fresh(db, Claim, visit.claim_id).status == "denied"
    assert jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.insurance_paid_cents, row.difference_cents) == (
        PRICE, 0, PRICE - 3900)
    assert balance_charge(db, visit.appointment_id).amount_cents == PRICE - 3900
    assert "this service is not covered by your plan" in row.explanation
    assert fresh(db, Claim, visit.claim_id).status == "reconciled"


@pytest.mark.parametrize("shape", ["W100000050", "W100000197"])
def test_co_denials_are_written_off_never_charged(db, hybrid_visit, payer_sandbox, shape):
    visit = hybrid_visit(shape, deposit=3900)
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "refund"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.patient_responsibility_cents, row.written_off_cents, row.difference_cents) == (0, PRICE, -3900)
    assert balance_charge(db, visit.appointment_id) is None
    assert db.get(Refund, row.refund_id).amount_cents == 3900       # the whole deposit back
    assert "you owe nothing for it" in row.explanation


def test_a_co_denial_without_a_deposit_ends_with_nothing(db, hybrid_visit, payer_sandbox):
    visit = hybrid_visit("W100000050", deposit=0)
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "none"
    assert balance_charge(db, visit.appointment_id) is None


def test_self_pay_is_reconciled_at_signing(db, hybrid_visit):
    visit = hybrid_visit(None, deposit=10000)
    assert visit.claim_id is None
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.outcome, row.patient_responsibility_cents, row.difference_cents, row.claim_id) == (
        "balance_charge", PRICE, PRICE - 10000, None)
    assert actions(db, visit.appointment_id, "claim.") == ["claim.self_pay"]


def test_a_secondary_plan_is_billed_before_the_patient(db, hybrid_visit, payer_sandbox, stripe_admin):
    visit = hybrid_visit("W100000001", deposit=2000, secondary="BCBS-MET")
    answered(db, payer_sandbox, visit.claim_id)                # the primary leaves 95.00 to the patient
    assert jobs.reconcile_visit(visit.appointment_id) == "waiting"
    assert reconciliation_of(db, visit.appointment_id) is None and balance_charge(db, visit.appointment_id) is None
    secondary = db.scalar(select(Claim).where(Claim.appointment_id == visit.appointment_id,
                                              Claim.rank == "secondary"))
    assert (secondary.status, secondary.primary_claim_id, secondary.billed_cents) == ("draft", visit.claim_id, 9500)
    assert fresh(db, Claim, visit.claim_id).status == "adjudicated"
    answered(db, payer_sandbox, secondary.id)     # BCBS: allowed 90.00, copay 30.00 + 10% of 60.00 = 36.00
    assert jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    row = reconciliation_of(db, visit.appointment_id)
    assert (row.claim_id, row.patient_responsibility_cents, row.difference_cents) == (secondary.id, 3600, 1600)
    assert [c.status for c in db.scalars(select(Claim).where(Claim.appointment_id == visit.appointment_id)
                                         .order_by(Claim.id))] == ["reconciled", "reconciled"]
    assert "second plan" in row.explanation


def test_a_duplicate_and_a_late_remittance_are_applied_once(db, hybrid_visit, payer_sandbox):
    visit = hybrid_visit("W100000003", deposit=3900)
    answered(db, payer_sandbox, visit.claim_id)
    # the clearinghouse sends it again (a cursor replay): audited, ignored
    cursor = claims.cursor(db)
    cursor.remittance_seq = 0
    db.commit()
    again = jobs.poll_remittances()
    assert again["applied"] == 0 and again["ignored"] == 1
    # a late, different answer for the same claim (here: a paper EOB typed in afterwards)
    claim = fresh(db, Claim, visit.claim_id)
    late = claims.apply(db, claim.id, external_id="era-late-1", source="clearinghouse", status="processed",
                        lines=[], billed_cents=PRICE, allowed_cents=0, paid_cents=PRICE, actor=claims.CLEARINGHOUSE,
                        now=claim.adjudicated_at)
    db.commit()
    assert late is None
    with pytest.raises(claims.ClaimError):
        claims.record_eob(db, claim.id, [], user=None, actor=claims.CLEARINGHOUSE, now=claim.adjudicated_at)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Remittance).where(Remittance.claim_id == claim.id)) == 1
    ignored = db.scalars(select(AuditEvent).where(AuditEvent.action == "remittance.ignored")
                         .order_by(AuditEvent.seq)).all()
    assert [e.reason for e in ignored] == ["duplicate", "the claim was already answered"]
    assert jobs.reconcile_visit(visit.appointment_id) == "none"


def test_a_remittance_for_an_unknown_claim_is_skipped_and_the_cursor_moves(db, hybrid_visit, payer_sandbox,
                                                                          new_member):
    from datetime import date

    from app.integrations.clearinghouse import ClaimLine

    payer, member = new_member("W100000003")
    stranger = claims.client().submit_claim(claim_id="not-ours-" + member, payer_id=payer, member_id=member,
                                            service_date=date(2026, 12, 7), diagnoses=["J06.9"],
                                            lines=[ClaimLine("CPT", "99213", 15000)])
    payer_sandbox.adjudicate_now(stranger.claim_id)
    polled = jobs.poll_remittances()
    assert polled["applied"] == 0 and polled["skipped"] >= 1
    db.expire_all()
    seq = claims.client().claim_status(stranger.claim_id).remittance.seq
    assert claims.cursor(db).remittance_seq >= seq
    skipped = db.scalars(select(AuditEvent).where(AuditEvent.action == "remittance.skipped")).all()
    assert any(e.details["seq"] == seq for e in skipped)
    assert member not in str([e.details for e in skipped])
