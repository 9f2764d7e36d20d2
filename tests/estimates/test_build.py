"""Estimates built from the fee schedule, the payer's rates and the stored 271; attached to the
appointment; the Good Faith Estimate for self-pay and uninsured patients. The insured estimate is
checked against the simulator's own adjudication of the same claim."""
import json
import uuid
from datetime import date, timedelta

from sqlalchemy import select

from app.integrations.clearinghouse import ClaimLine, patient_responsibility_cents
from app.models import Estimate, Intake
from app.services import eligibility, estimates

DAY = date(2026, 12, 10)


def build(db, patient, visit_type, clock, actor, intake=None):
    row = estimates.build(db, patient=patient, appointment_type=visit_type, intake=intake, service_date=DAY,
                          now=clock.now(), actor=actor)
    db.commit()
    return row


def test_insured_estimate_from_the_default_percent(db, factories, hybrid_type, coverage, new_member, clock,
                                                   job_actor):
    member = new_member(deductible_met_cents=48000, oop_met_cents=100000)     # $20.00 of deductible left
    patient = factories.patient()
    coverage(patient, member)
    est = build(db, patient, hybrid_type, clock, job_actor)          # no check yet: one is made ('entry')
    assert est.kind == "insured" and not est.good_faith and est.eligibility_check_id
    # billed 150.00; no contracted amount: allowed 60% = 90.00; copay 25.00; deductible 20.00; 20% of 45.00
    assert (est.billed_cents, est.allowed_cents, est.copay_cents, est.deductible_cents, est.coinsurance_cents,
            est.patient_cents, est.insurer_cents, est.deposit_rule, est.deposit_cents) == \
        (15000, 9000, 2500, 2000, 900, 5400, 3600, "estimate", 5400)
    assert est.lines == [{"system": "LOCAL", "code": "LOC-FOLLOWUP", "modifier": "", "units": 1,
                          "billed_cents": 15000, "allowed_cents": 9000,
                          "description": "Follow-up visit, clinic rate (local code)"}]


def test_insured_estimate_matches_what_the_payer_adjudicates(db, factories, payers, coverage, new_member,
                                                             payer_sandbox, clock, job_actor):
    """A licensed clinic's CPT 99213 at $150.00 with AETNA-DEMO's contracted $95.00 (as the seed loads it):
    the estimate's patient share is the remittance's PR total, the insurer's part its payment."""
    from app.models import BillingCode, FeeScheduleEntry, PayerAllowedAmount

    code = BillingCode(system="CPT", code="99213", descriptor="Established patient visit (test)", active=True)
    db.add(code)
    db.flush()
    db.add(FeeScheduleEntry(billing_code_id=code.id, modifier="", price_cents=15000, effective_from=date(2025, 1, 1)))
    db.add(PayerAllowedAmount(payer_id="AETNA-DEMO", billing_code_id=code.id, allowed_cents=9500))
    visit_type = factories.appointment_type(name="Follow-up (insurance)", payment_timing="hybrid",
                                            expected_codes=[{"system": "CPT", "code": "99213", "units": 1}])
    member = new_member(deductible_met_cents=48000, oop_met_cents=100000)
    patient = factories.patient()
    coverage(patient, member)
    est = build(db, patient, visit_type, clock, job_actor)
    assert (est.allowed_cents, est.copay_cents, est.deductible_cents, est.coinsurance_cents, est.patient_cents) == \
        (9500, 2500, 2000, 1000, 5500)
    assert est.lines[0]["description"] is None          # CPT descriptors are the AMA's: not on the estimate
    client = eligibility.client()
    claim_id = f"est-{uuid.uuid4()}"
    client.submit_claim(claim_id=claim_id, payer_id="AETNA-DEMO", member_id=member, service_date=DAY,
                        diagnoses=["I10"], lines=[ClaimLine("CPT", "99213", 15000)])
    payer_sandbox.adjudicate_now(claim_id)
    remittance = client.claim_status(claim_id).remittance
    assert patient_responsibility_cents(remittance) == est.patient_cents
    assert remittance.paid_cents == est.insurer_cents and remittance.allowed_cents == est.allowed_cents


def test_contracted_amount_wins_over_the_default_percent(db, factories, hybrid_type, follow_up_code, coverage,
                                                         new_member, clock, job_actor):
    from app.models import PayerAllowedAmount

    db.add(PayerAllowedAmount(payer_id="AETNA-DEMO", billing_code_id=follow_up_code.id, allowed_cents=10000))
    db.commit()
    patient = factories.patient()
    coverage(patient, new_member(deductible_met_cents=50000))
    est = build(db, patient, hybrid_type, clock, job_actor)
    assert est.allowed_cents == 10000 and est.patient_cents == 2500 + 1500      # copay + 20% of 75.00


def test_secondary_coverage_pays_part_of_the_share(db, factories, hybrid_type, coverage, new_member, clock,
                                                   job_actor):
    patient = factories.patient()
    coverage(patient, new_member(deductible_met_cents=50000))                         # share 25.00 + 13.00
    coverage(patient, new_member("BCBS-DEMO", "BCBS-PPO", deductible_met_cents=100000), payer_id="BCBS-DEMO",
             rank="secondary")
    est = build(db, patient, hybrid_type, clock, job_actor)
    # The secondary applies its own copay (30.00, of the 38.00) and 10% of the rest (0.80): it pays 7.20.
    assert est.kind == "insured" and est.secondary_coverage_id is not None
    assert (est.secondary_cents, est.patient_cents) == (720, 3080)
    assert est.deposit_cents == 3080


def test_self_pay_intake_gets_a_good_faith_estimate(db, factories, hybrid_type, coverage, new_member, clock,
                                                    job_actor):
    patient = factories.patient()
    coverage(patient, new_member())
    intake = Intake(patient_id=patient.id, appointment_type_id=hybrid_type.id, status="submitted",
                    data=json.dumps({"self_pay": True}))
    db.add(intake)
    db.commit()
    est = build(db, patient, hybrid_type, clock, job_actor, intake=intake)
    assert est.kind == "self_pay" and est.good_faith and est.coverage_id is None
    assert (est.billed_cents, est.patient_cents, est.insurer_cents, est.deposit_cents) == (15000, 15000, 0, 15000)
    assert estimates.latest_for_intake(db, intake.id).id == est.id


def test_no_coverage_or_inactive_or_unreachable_is_self_pay(db, factories, hybrid_type, coverage, new_member,
                                                            payer_sandbox, clock, job_actor):
    nobody = build(db, factories.patient(), hybrid_type, clock, job_actor)
    assert nobody.kind == "self_pay" and nobody.good_faith and nobody.eligibility_check_id is None

    patient = factories.patient()
    cov = coverage(patient, new_member(active=False, coverage_end="2025-12-31"))
    inactive = build(db, patient, hybrid_type, clock, job_actor)
    assert inactive.kind == "self_pay" and inactive.coverage_id == cov.id and inactive.patient_cents == 15000
    assert db.get(type(eligibility.latest(db, cov.id)), inactive.eligibility_check_id).status == "inactive"

    patient = factories.patient()
    coverage(patient, new_member())
    payer_sandbox.inject_fault("error", count=1, path="/eligibility")
    try:
        unreachable = build(db, patient, hybrid_type, clock, job_actor)
    finally:
        payer_sandbox.reset_faults()
    assert unreachable.kind == "self_pay" and unreachable.patient_cents == 15000


def test_type_without_priced_codes_uses_its_own_price(db, factories, clock, job_actor):
    plain = factories.appointment_type(name="Consult", price_cents=12500, expected_codes=[
        {"system": "LOCAL", "code": "NOT-A-CODE", "units": 1}])
    est = build(db, factories.patient(), plain, clock, job_actor)
    assert est.billed_cents == 12500 and est.lines[0]["description"] == "Consult"


def test_attach_keeps_the_estimate_with_the_appointment_and_sets_the_gfe_due_date(
        db, factories, hybrid_type, appointment_for, clock, job_actor):
    patient = factories.patient()
    est = build(db, patient, hybrid_type, clock, job_actor)
    appointment = appointment_for(patient, hybrid_type, clock.now() + timedelta(days=14), status="held")
    attached = estimates.attach(db, est, appointment, now=clock.now(), actor=job_actor)
    db.commit()
    assert attached.id == est.id and attached.appointment_id == appointment.id
    # Booked Monday Dec 7 (UTC clinic), visit Dec 21: 10 business days away -> due end of Thursday Dec 10.
    assert attached.gfe_due_by.date() == date(2026, 12, 10)
    assert estimates.for_appointment(db, appointment.id).id == est.id
    # The same estimate on another booking is a copy: the first keeps its own.
    other = appointment_for(patient, hybrid_type, clock.now() + timedelta(days=2), status="held")
    copy = estimates.attach(db, est, other, now=clock.now(), actor=job_actor)
    db.commit()
    assert copy.id != est.id and copy.appointment_id == other.id and copy.patient_cents == est.patient_cents
    assert copy.gfe_due_by == clock.now()                 # 2 business days away: at scheduling
    assert estimates.for_appointment(db, appointment.id).id == est.id


def test_good_faith_for_any_timing(db, factories, hybrid_type, appointment_for, coverage, new_member, clock,
                                   job_actor):
    plain = factories.appointment_type(name="Telehealth consult", price_cents=12500, payment_timing="deposit_to_book")
    patient = factories.patient()
    coverage(patient, new_member())            # insured, but the clinic never bills a deposit-to-book visit to a plan
    booked = appointment_for(patient, plain, clock.now() + timedelta(days=5))
    gfe = estimates.good_faith_for(db, booked, now=clock.now(), actor=job_actor)
    db.commit()
    assert gfe.good_faith and gfe.kind == "self_pay" and gfe.appointment_id == booked.id
    assert (gfe.billed_cents, gfe.patient_cents, gfe.deposit_cents) == (12500, 12500, 0)
    assert gfe.gfe_due_by is not None
    assert estimates.good_faith_for(db, booked, now=clock.now(), actor=job_actor).id == gfe.id   # once

    insured_visit = appointment_for(patient, hybrid_type, clock.now() + timedelta(days=5))
    assert estimates.good_faith_for(db, insured_visit, now=clock.now(), actor=job_actor) is None
    db.commit()
    uninsured_visit = appointment_for(factories.patient(), hybrid_type, clock.now() + timedelta(days=5))
    gfe2 = estimates.good_faith_for(db, uninsured_visit, now=clock.now(), actor=job_actor)
    db.commit()
    assert gfe2.good_faith and gfe2.billed_cents == 15000 and gfe2.deposit_cents == 15000
    assert db.scalars(select(Estimate).where(Estimate.appointment_id == uninsured_visit.id)).one().id == gfe2.id
