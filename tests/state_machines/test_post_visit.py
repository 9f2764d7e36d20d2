"""The issue-14 machines: the encounter (open -> signed), the CardSetup mirror of a SetupIntent,
and the collections case of a visit charge. Walk every edge, refuse every other move, ignore a repeat."""
from app.models import CardSetup, CollectionCase, Encounter
from app.models.emr import ENCOUNTER_TRANSITIONS
from app.models.postvisit import CASE_STATUSES, CASE_TRANSITIONS, SETUP_MIRROR

CASE_ACTIONS = ("charge", "succeed", "fail", "retry", "escalate", "write_off", "send_to_agency", "plan", "default")
CASE_EXPECTED = {
    ("pending", "charge"): "charging",
    ("charging", "succeed"): "paid",
    ("charging", "fail"): "recovering",
    ("recovering", "retry"): "charging",
    ("recovering", "succeed"): "paid",
    ("recovering", "escalate"): "collections",
    ("recovering", "write_off"): "written_off",
    ("collections", "succeed"): "paid",
    ("collections", "send_to_agency"): "with_agency",
    ("collections", "plan"): "payment_plan",
    ("collections", "write_off"): "written_off",
    ("with_agency", "succeed"): "paid",
    ("with_agency", "write_off"): "written_off",
    ("payment_plan", "succeed"): "paid",
    ("payment_plan", "default"): "collections",
}
SETUP_STRIPE = ["requires_payment_method", "requires_confirmation", "requires_action", "processing", "succeeded",
                "canceled"]


def case(status):
    return CollectionCase(charge_id=1, encounter_id=1, appointment_id=1, status=status, retries_done=0, plan_paid=0)


def test_the_case_table_is_the_one_reviewed_here():
    assert CASE_TRANSITIONS == CASE_EXPECTED


def test_every_case_pair(machine_check):
    checked = machine_check(case, CollectionCase.transition, CASE_EXPECTED, CASE_STATUSES, CASE_ACTIONS)
    assert checked == len(CASE_STATUSES) * len(CASE_ACTIONS)


def test_paid_and_written_off_are_the_ends():
    for end in ("paid", "written_off"):
        assert not any(state == end for state, _ in CASE_TRANSITIONS)
        assert not case(end).is_open


def test_the_encounter_only_signs_once(machine_check):
    assert ENCOUNTER_TRANSITIONS == {("open", "sign"): "signed"}
    checked = machine_check(lambda s: Encounter(status=s), Encounter.transition, ENCOUNTER_TRANSITIONS,
                            ("open", "signed"), ("sign",))
    assert checked == 2


def test_every_card_setup_pair(mirror_check):
    checked = mirror_check(lambda s: CardSetup(appointment_id=1, patient_id=1, status=s), {"succeeded", "canceled"},
                           {"creating"}, SETUP_STRIPE, never=["creating", "setup", "requires_capture"])
    assert checked == (len(SETUP_STRIPE) + 1) * (len(SETUP_STRIPE) + 3)
    assert SETUP_MIRROR.table["succeeded"] == frozenset()
