"""837P -> 835: adjudication after the delay, CARC adjustments with consistent sums, denials,
idempotent submission and the member's accumulators moving once per claim."""
import time
from datetime import date

import pytest

from app.integrations.clearinghouse import (
    Adjustment, ClaimLine, ClearinghouseRejected, Remittance, patient_responsibility_cents, written_off_cents)

from .conftest import DELAY

DAY = date(2026, 12, 1)
VISIT = ClaimLine("CPT", "99214", billed_cents=20000)           # Aetna demo fee schedule: 135.00
LOCAL = ClaimLine("LOCAL", "INJ1", billed_cents=10000)           # not on it: 60% of billed = 60.00


def submit(clearinghouse, claim_id, member_id, lines=(VISIT,), payer_id="AETNA-DEMO"):
    return clearinghouse.submit_claim(claim_id=claim_id, payer_id=payer_id, member_id=member_id,
                                      service_date=DAY, diagnoses=["J06.9", "Z00.00"], lines=list(lines))


def adjudicated(clearinghouse, payer_sandbox, claim_id) -> Remittance:
    status = payer_sandbox.adjudicate_now(claim_id)
    assert status["status"] == "adjudicated"
    remittance = clearinghouse.claim_status(claim_id).remittance
    assert remittance is not None
    return remittance


def sums_are_consistent(remittance: Remittance) -> None:
    for line in remittance.lines:
        assert line.billed_cents == line.paid_cents + sum(a.amount_cents for a in line.adjustments)
        assert line.allowed_cents == line.paid_cents + sum(
            a.amount_cents for a in line.adjustments if a.label in ("PR-1", "PR-2", "PR-3"))
        if line.allowed_cents:                              # a denied line has no contractual amount
            assert line.billed_cents - line.allowed_cents == sum(
                a.amount_cents for a in line.adjustments if a.label == "CO-45")
    assert remittance.billed_cents == sum(x.billed_cents for x in remittance.lines)
    assert remittance.paid_cents == sum(x.paid_cents for x in remittance.lines)
    assert remittance.billed_cents == (remittance.paid_cents + patient_responsibility_cents(remittance)
                                       + written_off_cents(remittance))
    assert remittance.raw["patient_responsibility_cents"] == patient_responsibility_cents(remittance)


def test_a_claim_is_adjudicated_after_the_delay_with_deductible_coinsurance_copay_and_contractual(
        clearinghouse, payer_sandbox, new_member, claim_ids):
    member = new_member(deductible_met_cents=40000)        # 100.00 of the 500.00 deductible left
    claim_id = next(claim_ids)
    started = time.monotonic()
    ack = submit(clearinghouse, claim_id, member, [VISIT, LOCAL])
    assert ack.status == "accepted" and ack.payer_claim_number.startswith("PCN") and not ack.replayed
    assert clearinghouse.claim_status(claim_id).status == "accepted"
    assert claim_id not in {r.claim_id for r in clearinghouse.remittances(0)}

    while (status := clearinghouse.claim_status(claim_id)).status != "adjudicated":
        assert time.monotonic() - started < DELAY + 5, "never adjudicated"
        time.sleep(0.1)
    assert time.monotonic() - started >= DELAY * 0.9
    remittance = status.remittance
    visit, local = remittance.lines
    # 99214: billed 200.00, allowed 135.00 -> CO-45 65.00; copay 25.00; deductible 100.00 (all that was
    # left); coinsurance 20% of the remaining 10.00 = 2.00; the payer pays 8.00.
    assert visit.allowed_cents == 13500 and visit.paid_cents == 800
    assert visit.adjustments == (Adjustment("CO", "45", 6500), Adjustment("PR", "1", 10000),
                                 Adjustment("PR", "2", 200), Adjustment("PR", "3", 2500))
    # local code: 60% of 100.00 allowed; copay and deductible already taken; coinsurance 12.00.
    assert local.allowed_cents == 6000 and local.paid_cents == 4800
    assert local.adjustments == (Adjustment("CO", "45", 4000), Adjustment("PR", "2", 1200))
    assert remittance.status == "processed" and remittance.claim_status_code == "1"
    assert (remittance.billed_cents, remittance.allowed_cents, remittance.paid_cents) == (30000, 19500, 5600)
    assert patient_responsibility_cents(remittance) == 13900
    assert written_off_cents(remittance) == 10500
    sums_are_consistent(remittance)
    assert remittance.payer_claim_number == ack.payer_claim_number
    polled = [r for r in clearinghouse.remittances(0) if r.claim_id == claim_id]
    assert polled == [remittance]
    assert clearinghouse.remittances(remittance.seq) == [r for r in clearinghouse.remittances(0)
                                                         if r.seq > remittance.seq]


@pytest.mark.parametrize("member_id, code", [("W100000050", "50"), ("W100000197", "197")])
def test_a_co_denial_is_written_off_and_the_patient_owes_nothing(
        clearinghouse, payer_sandbox, claim_ids, member_id, code):
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, member_id, [VISIT, LOCAL])
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    assert remittance.status == "denied" and remittance.claim_status_code == "4"
    assert [line.adjustments for line in remittance.lines] == [(Adjustment("CO", code, 20000),),
                                                               (Adjustment("CO", code, 10000),)]
    assert remittance.paid_cents == 0 and patient_responsibility_cents(remittance) == 0
    assert written_off_cents(remittance) == 30000
    sums_are_consistent(remittance)


def test_a_pr_204_denial_is_the_patients(clearinghouse, payer_sandbox, claim_ids):
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, "W100000204", [VISIT])
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    assert remittance.status == "denied" and remittance.lines[0].adjustments == (Adjustment("PR", "204", 20000),)
    assert patient_responsibility_cents(remittance) == 20000 and written_off_cents(remittance) == 0
    assert "not covered" in remittance.lines[0].adjustments[0].description
    sums_are_consistent(remittance)


def test_a_code_the_plan_excludes_is_pr_204_on_that_line_only(clearinghouse, payer_sandbox, new_member, claim_ids):
    member = new_member("BCBS-DEMO", "BCBS-PPO", deductible_met_cents=100000)
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, member, [ClaimLine("CPT", "99213", 15000),
                                              ClaimLine("HCPCS", "G2012", 3000)], payer_id="BCBS-DEMO")
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    office, checkin = remittance.lines
    # 99213 at BCBS: allowed 90.00 -> copay 30.00, coinsurance 10% of 60.00 = 6.00, paid 54.00
    assert office.adjustments == (Adjustment("CO", "45", 6000), Adjustment("PR", "2", 600), Adjustment("PR", "3", 3000))
    assert checkin.adjustments == (Adjustment("PR", "204", 3000),)
    assert remittance.status == "processed" and patient_responsibility_cents(remittance) == 6600
    sums_are_consistent(remittance)


@pytest.mark.parametrize("member_id, label", [("Z99999999", "CO-31"), ("W100000009", "PR-27")])
def test_unknown_or_inactive_members_are_denied(clearinghouse, payer_sandbox, claim_ids, member_id, label):
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, member_id)
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    assert [a.label for a in remittance.adjustments] == [label] and remittance.status == "denied"
    sums_are_consistent(remittance)


def test_the_out_of_pocket_maximum_caps_the_patients_share(clearinghouse, payer_sandbox, new_member, claim_ids):
    member = new_member(deductible_met_cents=50000, oop_met_cents=297000)     # 30.00 left to the maximum
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, member)
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    # copay 25.00 + coinsurance 22.00 = 47.00 > 30.00: coinsurance is cut to 5.00
    assert remittance.lines[0].adjustments == (Adjustment("CO", "45", 6500), Adjustment("PR", "2", 500),
                                               Adjustment("PR", "3", 2500))
    assert patient_responsibility_cents(remittance) == 3000
    sums_are_consistent(remittance)
    e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY)
    assert e.oop_remaining_cents == 0


@pytest.mark.parametrize("member_id, patient_owes", [("W100000777", 2500), ("W100000666", 6900)])
def test_members_whose_payer_pays_more_or_less_than_the_271_suggests(
        clearinghouse, payer_sandbox, claim_ids, member_id, patient_owes):
    e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member_id, service_date=DAY)
    assert e.coinsurance_percent == 20 and e.deductible_remaining_cents == 0
    estimate = e.copay_cents + (13500 - e.copay_cents) * e.coinsurance_percent // 100        # 47.00
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, member_id)
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    assert estimate == 4700 and patient_responsibility_cents(remittance) == patient_owes
    sums_are_consistent(remittance)


def test_a_duplicate_claim_id_gets_the_same_answer_and_is_adjudicated_once(
        clearinghouse, payer_sandbox, new_member, claim_ids):
    member = new_member()
    claim_id = next(claim_ids)
    first = submit(clearinghouse, claim_id, member)
    again = submit(clearinghouse, claim_id, member)
    assert again.replayed and (again.payer_claim_number, again.status, again.received_at) == (
        first.payer_claim_number, first.status, first.received_at)
    with pytest.raises(ClearinghouseRejected) as rejected:
        submit(clearinghouse, claim_id, member, [LOCAL])
    assert (rejected.value.status, rejected.value.code) == (409, "duplicate_claim_id")
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    after = submit(clearinghouse, claim_id, member)
    assert after.replayed and after.payer_claim_number == first.payer_claim_number
    payer_sandbox.adjudicate_now(claim_id)                  # already adjudicated: nothing happens
    assert [r.id for r in clearinghouse.remittances(0) if r.claim_id == claim_id] == [remittance.id]


def test_the_deductible_and_out_of_pocket_accumulators_move_once_per_claim(
        clearinghouse, payer_sandbox, new_member, claim_ids):
    member = new_member()                                   # nothing met: 500.00 deductible, 3000.00 maximum

    def accumulators():
        e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY)
        return e.deductible_met_cents, e.deductible_remaining_cents, e.oop_met_cents

    assert accumulators() == (0, 50000, 0)
    claim_id = next(claim_ids)
    submit(clearinghouse, claim_id, member)
    assert accumulators() == (0, 50000, 0)                  # nothing until adjudicated
    remittance = adjudicated(clearinghouse, payer_sandbox, claim_id)
    # allowed 135.00: copay 25.00, deductible 110.00, nothing left for coinsurance, the payer pays 0
    assert remittance.lines[0].adjustments == (Adjustment("CO", "45", 6500), Adjustment("PR", "1", 11000),
                                               Adjustment("PR", "3", 2500))
    assert remittance.paid_cents == 0 and remittance.status == "processed"
    assert accumulators() == (11000, 39000, 13500)
    submit(clearinghouse, claim_id, member)                 # a repeat, re-polled, re-forced: no change
    payer_sandbox.adjudicate_now(claim_id)
    clearinghouse.remittances(0)
    assert accumulators() == (11000, 39000, 13500)
    second = next(claim_ids)
    submit(clearinghouse, second, member)
    adjudicated(clearinghouse, payer_sandbox, second)
    assert accumulators() == (22000, 28000, 27000)


def test_an_invalid_claim_is_rejected_with_reasons(clearinghouse, new_member, claim_ids):
    with pytest.raises(ClearinghouseRejected) as rejected:
        clearinghouse.submit_claim(claim_id=next(claim_ids), payer_id="AETNA-DEMO", member_id=new_member(),
                                   service_date=DAY, diagnoses=["not a code"],
                                   lines=[ClaimLine("SNOMED", "99213", 0, diagnosis_pointers=(3,))])
    assert rejected.value.status == 400
    text = " ".join(rejected.value.details)
    for field in ("diagnoses", "code_system", "billed_cents", "diagnosis_pointers"):
        assert field in text
