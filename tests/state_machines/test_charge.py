"""Charge: our own machine. Walk every edge, refuse every other move, ignore a repeat."""
import pytest

from app.models import Charge
from app.models.payment import CHARGE_TRANSITIONS
from app.models.state import Ignored, InvalidTransition

STATES = ("pending", "authorized", "captured", "canceled")
ACTIONS = ("authorize", "capture", "cancel", "reopen")
EXPECTED = {
    ("pending", "authorize"): "authorized",
    ("pending", "capture"): "captured",
    ("authorized", "capture"): "captured",
    ("pending", "cancel"): "canceled",
    ("authorized", "cancel"): "canceled",
    ("canceled", "reopen"): "pending",
}


def charge(status):
    return Charge(purpose="deposit", amount_cents=5000, currency="usd", status=status)


def test_the_table_is_the_one_reviewed_here():
    assert CHARGE_TRANSITIONS == EXPECTED


def test_every_pair(machine_check):
    checked = machine_check(charge, Charge.transition, EXPECTED, STATES, ACTIONS)
    assert checked == len(STATES) * len(ACTIONS)


def test_no_backwards_move():
    for state, action in (("captured", "cancel"), ("captured", "authorize"), ("authorized", "authorize"),
                          ("canceled", "authorize"), ("canceled", "capture"), ("captured", "reopen")):
        c = charge(state)
        with pytest.raises((InvalidTransition, Ignored)):
            c.transition(action)
        assert c.status == state
    with pytest.raises(InvalidTransition):
        charge("captured").transition("cancel")       # not a repeat: a backwards move


def test_a_repeat_is_ignored():
    c = charge("pending")
    assert c.transition("authorize") == "authorized"
    with pytest.raises(Ignored):
        c.transition("authorize")
    assert c.status == "authorized"
    assert c.transition("capture") == "captured"
    with pytest.raises(Ignored):
        c.transition("capture")
    assert c.status == "captured"


def test_can_says_what_the_table_says():
    assert charge("pending").can("cancel") and charge("authorized").can("cancel")
    assert not charge("captured").can("cancel") and not charge("canceled").can("cancel")
