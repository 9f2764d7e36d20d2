"""The issue-15 machines: the claim (draft -> submitted -> adjudicated | denied -> reconciled) and the
intake (draft -> submitted). Walk every edge, refuse every other move, ignore a repeat."""
from app.models import Claim, Intake
from app.models.claims import CLAIM_STATUSES, CLAIM_TRANSITIONS
from app.models.insurance import INTAKE_TRANSITIONS

CLAIM_ACTIONS = ("submit", "adjudicate", "deny", "reconcile")
CLAIM_EXPECTED = {
    ("draft", "submit"): "submitted",
    ("submitted", "adjudicate"): "adjudicated",
    ("submitted", "deny"): "denied",
    ("draft", "adjudicate"): "adjudicated",      # a paper EOB for a claim we never recorded as sent
    ("draft", "deny"): "denied",
    ("adjudicated", "reconcile"): "reconciled",
    ("denied", "reconcile"): "reconciled",
    ("draft", "reconcile"): "reconciled",
}


def claim(status):
    return Claim(encounter_id=1, appointment_id=1, coverage_id=1, rank="primary", status=status, billed_cents=100)


def test_the_claim_table_is_the_one_reviewed_here():
    assert CLAIM_TRANSITIONS == CLAIM_EXPECTED


def test_every_claim_pair(machine_check):
    checked = machine_check(claim, Claim.transition, CLAIM_EXPECTED, CLAIM_STATUSES, CLAIM_ACTIONS)
    assert checked == len(CLAIM_STATUSES) * len(CLAIM_ACTIONS)


def test_a_reconciled_claim_is_the_end_and_an_answered_one_is_never_sent_again():
    assert not any(state == "reconciled" for state, _ in CLAIM_TRANSITIONS)
    for answered in ("adjudicated", "denied", "reconciled"):
        assert not claim(answered).can("submit")


def test_an_intake_is_submitted_once(machine_check):
    assert INTAKE_TRANSITIONS == {("draft", "submit"): "submitted"}
    checked = machine_check(lambda s: Intake(patient_id=1, appointment_type_id=1, status=s), Intake.transition,
                            INTAKE_TRANSITIONS, ("draft", "submitted"), ("submit",))
    assert checked == 2
