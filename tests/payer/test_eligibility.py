"""270 -> 271: what the simulator answers for active, inactive and unknown members."""
from datetime import date

import pytest

from app.integrations.clearinghouse import Clearinghouse, ClearinghouseRejected

DAY = date(2026, 12, 1)


def test_an_active_member_with_a_partly_met_deductible(clearinghouse, payer_sandbox):
    e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id="W100000001", service_date=DAY,
                                        subscriber_first_name="Ada", subscriber_last_name="Lovelace",
                                        subscriber_birth_date=date(1985, 12, 10), service_type_codes=["30", "98"])
    assert e.active and e.errors == ()
    assert e.plan_name == "Aetna Open Access PPO (demo)" and e.group_number == "AET-0001"
    assert (e.copay_cents, e.coinsurance_percent) == (2500, 20)
    assert (e.deductible_cents, e.deductible_met_cents, e.deductible_remaining_cents) == (50000, 20000, 30000)
    assert (e.oop_max_cents, e.oop_met_cents, e.oop_remaining_cents) == (300000, 40000, 260000)
    # the raw answer, with the 271's benefit loops, is what the app will store with the coverage
    assert e.raw["id"] == e.id and e.raw["service_type_codes"] == ["30", "98"]
    assert {(b["eb01"], b.get("time_period")) for b in e.raw["benefits"]} >= {("1", None), ("C", "29"), ("G", "29")}
    assert any(r["id"] == e.id for r in payer_sandbox.eligibility_responses())


def test_an_inactive_member(clearinghouse):
    e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id="W100000009", service_date=DAY)
    assert not e.active and e.errors == ()
    assert e.raw["coverage"]["status_code"] == "6" and e.coverage_end == date(2025, 12, 31)
    assert e.plan_name and e.copay_cents is None and e.deductible_remaining_cents is None


def test_coverage_that_starts_after_the_visit_is_inactive_on_that_day(clearinghouse, new_member):
    member = new_member(coverage_start="2027-01-01")
    assert not clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY).active
    assert clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member,
                                           service_date=date(2027, 1, 2)).active


@pytest.mark.parametrize("member_id, code", [("Z99999999", "75"), ("no such id!", "72"), ("", "72")])
def test_unknown_or_invalid_member_ids_are_aaa_errors(clearinghouse, member_id, code):
    e = clearinghouse.check_eligibility(payer_id="BCBS-DEMO", member_id=member_id, service_date=DAY)
    assert not e.active
    assert e.error_codes == (code,) and e.errors[0].description and e.errors[0].followup_action == "C"


def test_a_birth_date_that_does_not_match_is_aaa_71(clearinghouse, new_member):
    member = new_member(birth_date="1970-01-01")
    e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY,
                                        subscriber_birth_date=date(1971, 1, 1))
    assert e.error_codes == ("71",) and not e.active
    assert clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY,
                                           subscriber_birth_date=date(1970, 1, 1)).active


def test_plan_overrides_per_member(clearinghouse, new_member):
    member = new_member(plan_overrides={"copay_cents": 4000}, deductible_met_cents=60000)
    e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY)
    assert e.copay_cents == 4000
    assert (e.deductible_met_cents, e.deductible_remaining_cents) == (50000, 0)   # capped at the deductible


def test_an_unknown_payer_or_a_wrong_key_is_rejected(clearinghouse, payer_sandbox):
    with pytest.raises(ClearinghouseRejected) as rejected:
        clearinghouse.check_eligibility(payer_id="NOPE", member_id="W100000001", service_date=DAY)
    assert (rejected.value.status, rejected.value.code) == (422, "unknown_payer")
    wrong = Clearinghouse(payer_sandbox.api_base, "not-the-key")
    with pytest.raises(ClearinghouseRejected) as rejected:
        wrong.check_eligibility(payer_id="AETNA-DEMO", member_id="W100000001", service_date=DAY)
    assert rejected.value.status == 401


def test_the_payer_list(clearinghouse):
    ids = {p.id for p in clearinghouse.payers()}
    assert {"AETNA-DEMO", "BCBS-DEMO", "MEDICAID-DEMO"} <= ids
