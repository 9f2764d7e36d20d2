"""Shared checks for the state-machine tests: every (state, action) pair of one of our
machines, and every (state, reported status) pair of a mirror of a Stripe object."""
from __future__ import annotations

import pytest

from app.models.state import Ignored, InvalidTransition


def check_machine(make, move, expected: dict[tuple[str, str], str], states, actions) -> int:
    """``make(state)`` builds an object in ``state``; ``move(obj, action)`` is its one writer.

    Every edge of ``expected`` moves the object; a pair outside it whose action already leads to
    the current state is a repeat (Ignored, nothing changes); every other pair is refused
    (InvalidTransition, nothing changes). Returns how many pairs were checked."""
    checked = 0
    for state in states:
        for action in actions:
            obj = make(state)
            if (state, action) in expected:
                assert move(obj, action) == expected[(state, action)], (state, action)
                assert obj.status == expected[(state, action)], (state, action)
            elif state in {to for (_, a), to in expected.items() if a == action}:
                with pytest.raises(Ignored):
                    move(obj, action)
                assert obj.status == state, (state, action)
            else:
                with pytest.raises(InvalidTransition):
                    move(obj, action)
                assert obj.status == state, (state, action)
            checked += 1
    return checked


def check_mirror(make, final: set[str], local: set[str], reportable: list[str], never: list[str]) -> int:
    """``make(state)`` builds the mirror in ``state``; ``obj.mirror(status)`` is its one writer.

    From a state that is not final, every status Stripe can report is applied as reported; a
    repeat of the current status and any report after a final status are ignored (False,
    nothing changes); a status Stripe never reports is refused. Returns how many pairs were checked."""
    checked = 0
    for state in list(local) + reportable:
        for reported in reportable:
            obj = make(state)
            applied = obj.mirror(reported)
            if reported == state or state in final:
                assert applied is False, (state, reported)
                assert obj.status == state, (state, reported)
            else:
                assert applied is True, (state, reported)
                assert obj.status == reported, (state, reported)
            checked += 1
        for bogus in never:
            obj = make(state)
            with pytest.raises(InvalidTransition):
                obj.mirror(bogus)
            assert obj.status == state
            checked += 1
    return checked


@pytest.fixture
def machine_check():
    return check_machine


@pytest.fixture
def mirror_check():
    return check_mirror
