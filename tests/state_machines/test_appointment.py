"""Appointment: our own machine (the table booking's one writer moves through)."""
from app.models import Appointment
from app.models.appointment import TRANSITIONS

STATES = ("held", "confirmed", "checked_in", "completed", "canceled", "no_show", "released")
ACTIONS = ("confirm", "release", "cancel", "check_in", "complete", "no_show")
EXPECTED = {
    ("held", "confirm"): "confirmed",
    ("released", "confirm"): "confirmed",
    ("held", "release"): "released",
    ("held", "cancel"): "canceled",
    ("confirmed", "cancel"): "canceled",
    ("confirmed", "check_in"): "checked_in",
    ("checked_in", "complete"): "completed",
    ("confirmed", "no_show"): "no_show",
}


class _Moving:
    """An appointment moved the way booking's writer moves it: status = next_status(action)."""

    def __init__(self, status):
        self.appointment = Appointment(status=status)

    @property
    def status(self):
        return self.appointment.status


def move(obj, action):
    obj.appointment.status = obj.appointment.next_status(action)
    return obj.appointment.status


def test_the_table_is_the_one_reviewed_here():
    assert TRANSITIONS == EXPECTED


def test_every_pair(machine_check):
    assert machine_check(_Moving, move, EXPECTED, STATES, ACTIONS) == len(STATES) * len(ACTIONS)
