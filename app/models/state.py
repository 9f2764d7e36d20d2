"""The shape every state machine shares: a table of allowed edges and three
kinds of "no" — invalid (a bug: raise), ignored (a late or duplicate event:
log and do nothing), and the edge itself."""
from __future__ import annotations


class InvalidTransition(Exception):
    def __init__(self, machine: str, state: str, action: str):
        super().__init__(f"{machine}: cannot {action} from {state}")
        self.state, self.action = state, action


class Ignored(Exception):
    """A repeat or late event: the object is already where the action leads."""


def next_state(machine: str, transitions: dict[tuple[str, str], str], state: str, action: str) -> str:
    target = transitions.get((state, action))
    if target is not None:
        return target
    if state in {to for (_, act), to in transitions.items() if act == action}:
        raise Ignored(f"{machine}: {action}: already {state}")
    raise InvalidTransition(machine, state, action)
