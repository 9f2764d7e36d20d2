"""ProviderAlert: our own machine (open -> recovered | released; released -> recovered)."""
from datetime import datetime, timezone

import pytest

from app.models import ProviderAlert
from app.models.appointment import ALERT_TRANSITIONS
from app.models.state import Ignored, InvalidTransition

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
STATES = ("open", "recovered", "released")
ACTIONS = ("recover", "release")
EXPECTED = {
    ("open", "recover"): "recovered",
    ("open", "release"): "released",
    ("released", "recover"): "recovered",
}


def alert(status):
    return ProviderAlert(appointment_id=1, provider_id=1, status=status, release_deadline=NOW, raised_at=NOW)


def test_the_table_is_the_one_reviewed_here():
    assert ALERT_TRANSITIONS == EXPECTED


def test_every_pair(machine_check):
    checked = machine_check(alert, lambda a, action: a.transition(action, now=NOW), EXPECTED, STATES, ACTIONS)
    assert checked == len(STATES) * len(ACTIONS)


def test_a_move_stamps_resolved_at_and_a_refusal_does_not():
    a = alert("open")
    a.transition("release", now=NOW)
    assert (a.status, a.resolved_at) == ("released", NOW)
    b = alert("recovered")
    with pytest.raises(InvalidTransition):
        b.transition("release", now=NOW)             # a recovered alert never goes back to released
    assert (b.status, b.resolved_at) == ("recovered", None)


def test_a_repeat_is_ignored():
    a = alert("open")
    a.transition("recover", now=NOW)
    with pytest.raises(Ignored):
        a.transition("recover", now=NOW)
    assert a.status == "recovered"
