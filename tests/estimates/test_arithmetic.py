"""The estimate's arithmetic and the deposit rules (pure: no database). Amounts in cents; the rules
are the payer simulator's documented adjudication, so an honest 271 gives the remittance's numbers."""
from decimal import Decimal

import pytest

from app.models import AppointmentType
from app.services.estimates import Benefits, Line, compute, deposit

VISIT = [Line(system="CPT", code="99213", billed_cents=15000)]
AETNA = {"CPT:99213": 9500}


def plan(**kw):
    values = dict(copay_cents=0, coinsurance_percent=20, deductible_remaining_cents=0, oop_remaining_cents=None,
                  rates=AETNA, default_allowed_percent=60)
    values.update(kw)
    return Benefits(**values)


def parts(b):
    return dict(allowed=b.allowed_cents, copay=b.copay_cents, deductible=b.deductible_cents,
                coinsurance=b.coinsurance_cents, oop=b.oop_reduction_cents, secondary=b.secondary_cents,
                patient=b.patient_cents, insurer=b.insurer_cents)


def test_deductible_partly_met_takes_what_is_left_then_coinsurance_on_the_rest():
    b = compute(VISIT, plan(deductible_remaining_cents=3000))
    assert parts(b) == dict(allowed=9500, copay=0, deductible=3000, coinsurance=1300, oop=0, secondary=0,
                            patient=4300, insurer=5200)
    assert b.billed_cents == 15000 and b.insured


def test_deductible_larger_than_the_visit_takes_the_whole_allowed_amount():
    b = compute(VISIT, plan(copay_cents=2500, deductible_remaining_cents=30000))
    assert parts(b) == dict(allowed=9500, copay=2500, deductible=7000, coinsurance=0, oop=0, secondary=0,
                            patient=9500, insurer=0)


def test_deductible_fully_met_leaves_copay_and_coinsurance():
    b = compute(VISIT, plan(copay_cents=2500, deductible_remaining_cents=0))
    assert parts(b) == dict(allowed=9500, copay=2500, deductible=0, coinsurance=1400, oop=0, secondary=0,
                            patient=3900, insurer=5600)


@pytest.mark.parametrize("allowed, percent, expected", [
    (12345, 10, 1235),            # 1234.5 -> 1235 (half up)
    (12344, 10, 1234),            # 1234.4 -> 1234
    (10001, Decimal("12.5"), 1250),   # 1250.125 -> 1250
    (10004, Decimal("12.5"), 1251),   # 1250.5 -> 1251
    (333, Decimal("33.33"), 111),     # 110.99 -> 111
])
def test_coinsurance_rounds_half_up_to_the_cent(allowed, percent, expected):
    b = compute([Line("CPT", "X1", allowed)], plan(rates={}, default_allowed_percent=None,
                                                    coinsurance_percent=percent))
    assert b.coinsurance_cents == expected and b.patient_cents == expected


def test_copay_once_per_visit_and_never_more_than_the_allowed_amount():
    two = [Line("CPT", "99213", 15000), Line("CPT", "36415", 2000)]
    once = compute(two, plan(copay_cents=2500, coinsurance_percent=0, rates={"CPT:99213": 9500, "CPT:36415": 300}))
    assert (once.copay_cents, once.patient_cents, once.insurer_cents) == (2500, 2500, 7300)   # not twice
    small = compute(two, plan(copay_cents=3000, coinsurance_percent=0, rates={"CPT:99213": 2000, "CPT:36415": 300}))
    # The first line's allowed $20.00 takes $20.00 of the copay; what is left of it (as the payer does)
    # falls on the next line, never beyond the visit's allowed amount.
    assert (small.copay_cents, small.patient_cents, small.insurer_cents) == (2300, 2300, 0)
    assert [ln.allowed_cents for ln in small.lines] == [2000, 300]


def test_out_of_pocket_maximum_reached_the_patient_owes_nothing():
    b = compute(VISIT, plan(copay_cents=2500, oop_remaining_cents=0))
    assert (b.copay_cents, b.coinsurance_cents) == (2500, 1400)          # what the plan would have asked
    assert b.oop_reduction_cents == 3900 and b.patient_cents == 0 and b.insurer_cents == 9500


def test_out_of_pocket_maximum_partly_left_caps_the_share():
    b = compute(VISIT, plan(copay_cents=2500, deductible_remaining_cents=3000, oop_remaining_cents=5000))
    # copay 2500 + deductible 3000 + coinsurance 20% of 4000 = 800: 6300, capped at 5000.
    assert (b.copay_cents, b.deductible_cents, b.coinsurance_cents) == (2500, 3000, 800)
    assert b.oop_reduction_cents == 1300 and b.patient_cents == 5000 and b.insurer_cents == 4500


def test_out_of_pocket_cap_spans_lines():
    two = [Line("CPT", "99213", 15000), Line("CPT", "99214", 20000)]
    b = compute(two, plan(coinsurance_percent=50, rates={"CPT:99213": 10000, "CPT:99214": 10000},
                          oop_remaining_cents=7000))
    assert b.coinsurance_cents == 10000 and b.oop_reduction_cents == 3000 and b.patient_cents == 7000


def test_secondary_pays_its_share_of_the_primarys_patient_share():
    primary = plan(copay_cents=2500)                                    # patient share 3900
    full = compute(VISIT, primary, Benefits(coinsurance_percent=0))
    assert (full.secondary_cents, full.patient_cents, full.primary_patient_cents) == (3900, 0, 3900)
    part = compute(VISIT, primary, Benefits(coinsurance_percent=20))
    assert (part.secondary_cents, part.patient_cents) == (3120, 780)
    ded = compute(VISIT, primary, Benefits(deductible_remaining_cents=10000, coinsurance_percent=20))
    assert (ded.secondary_cents, ded.patient_cents) == (0, 3900)         # all to the secondary's deductible
    assert full.insurer_cents == 5600                                   # the primary's payment is unchanged


def test_payer_default_percent_for_a_code_without_a_contracted_amount():
    b = compute([Line("LOCAL", "LOC-FOLLOWUP", 7500)], plan(rates={}, default_allowed_percent=60,
                                                             coinsurance_percent=0))
    assert b.allowed_cents == 4500 and b.insurer_cents == 4500
    b = compute([Line("LOCAL", "LOC-FOLLOWUP", 7501)], plan(rates={}, default_allowed_percent=55,
                                                             coinsurance_percent=0))
    assert b.allowed_cents == 4126                                     # 4125.55 -> 4126
    b = compute([Line("LOCAL", "LOC-FOLLOWUP", 7500)], plan(rates={}, default_allowed_percent=None))
    assert b.allowed_cents == 7500                                     # no percent: billed


def test_contracted_amount_by_modifier_and_units_never_above_billed():
    b = compute([Line("CPT", "99213", 15000, modifier="95", units=2)],
                plan(rates={"CPT:99213": 9500, "CPT:99213:95": 7000}, coinsurance_percent=0))
    assert b.allowed_cents == 14000
    b = compute([Line("CPT", "99213", 5000)], plan(rates={"CPT:99213": 9500}))
    assert b.allowed_cents == 5000


def test_no_eligibility_is_self_pay_the_billed_amount():
    b = compute(VISIT + [Line(None, None, 2500)], None)
    assert not b.insured
    assert (b.billed_cents, b.allowed_cents, b.patient_cents, b.insurer_cents) == (17500, 17500, 17500, 0)


# -- deposit rules -------------------------------------------------------------------------------

def visit_type(**kw):
    values = dict(deposit_rule="estimate", deposit_percent=None, deposit_fixed_cents=None, deposit_cap_cents=None)
    values.update(kw)
    return AppointmentType(**values)


SHARE_3900 = compute(VISIT, plan(copay_cents=2500))          # copay 2500, patient 3900


def test_deposit_estimate_is_the_patient_share():
    assert deposit(visit_type(), SHARE_3900) == ("estimate", 3900)


def test_deposit_copay_is_the_copay_but_never_more_than_the_share():
    assert deposit(visit_type(deposit_rule="copay"), SHARE_3900) == ("copay", 2500)
    capped = compute(VISIT, plan(copay_cents=2500, oop_remaining_cents=1000))          # share 1000
    assert deposit(visit_type(deposit_rule="copay"), capped) == ("copay", 1000)


def test_deposit_percent_of_the_estimate_half_up():
    assert deposit(visit_type(deposit_rule="percent", deposit_percent=50), SHARE_3900) == ("percent", 1950)
    odd = compute([Line("CPT", "X", 3901)], None)
    assert deposit(visit_type(deposit_rule="percent", deposit_percent=50), odd) == ("percent", 1951)
    assert deposit(visit_type(deposit_rule="percent", deposit_percent=0), SHARE_3900) == ("percent", 0)


def test_deposit_fixed_may_exceed_the_estimate():
    assert deposit(visit_type(deposit_rule="fixed", deposit_fixed_cents=5000), SHARE_3900) == ("fixed", 5000)


def test_deposit_cap_applies_to_every_rule():
    assert deposit(visit_type(deposit_cap_cents=2000), SHARE_3900) == ("estimate", 2000)
    assert deposit(visit_type(deposit_rule="fixed", deposit_fixed_cents=8000, deposit_cap_cents=5000),
                   SHARE_3900) == ("fixed", 5000)
    assert deposit(visit_type(deposit_cap_cents=10000), SHARE_3900) == ("estimate", 3900)


def test_deposit_nothing_when_the_plan_pays_everything():
    zero = compute(VISIT, plan(copay_cents=2500, oop_remaining_cents=0))
    assert deposit(visit_type(), zero) == ("estimate", 0)
    assert deposit(visit_type(deposit_rule="percent", deposit_percent=100), zero) == ("percent", 0)
