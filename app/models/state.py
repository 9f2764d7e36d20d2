"""The shape every state machine shares: a table of allowed edges and three
kinds of "no" — invalid (a bug: raise), ignored (a late or duplicate event:
log and do nothing), and the edge itself."""
from __future__ import annotations

import logging


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


class Machine:
    """One of our own state machines: a table of (state, action) -> state.

    ``next`` refuses a move the table does not have (InvalidTransition) and
    ignores a repeat (Ignored: the object is already where the action leads).
    ``cas`` gives the source states and the one target of an action, so a
    compare-and-swap UPDATE (``WHERE status IN sources``) goes through the same
    table as an in-memory move."""

    def __init__(self, name: str, transitions: dict[tuple[str, str], str]):
        self.name, self.transitions = name, dict(transitions)

    @property
    def states(self) -> frozenset[str]:
        return frozenset(s for s, _ in self.transitions) | frozenset(self.transitions.values())

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(a for _, a in self.transitions)

    def next(self, state: str, action: str) -> str:
        return next_state(self.name, self.transitions, state, action)

    def allows(self, state: str, action: str) -> bool:
        return (state, action) in self.transitions

    def cas(self, action: str) -> tuple[tuple[str, ...], str]:
        """(the states ``action`` may leave from, the one state it leads to)."""
        edges = {(s, to) for (s, a), to in self.transitions.items() if a == action}
        targets = {to for _, to in edges}
        if len(targets) != 1:
            raise ValueError(f"{self.name}: {action} has {len(targets)} targets; a CAS needs exactly one")
        return tuple(sorted(s for s, _ in edges)), targets.pop()


class Mirror:
    """The status of an object that lives at Stripe: Stripe is the truth.

    Every status the remote object can report is applied as reported (an
    open PaymentIntent goes back to requires_payment_method after a decline;
    a succeeded Refund can fail), except that a report equal to the current
    status is a repeat and a report after a final status is stale: both are
    ignored (``apply`` returns None). ``local`` holds our own states the remote
    never reports (e.g. ``creating``: stored before Stripe heard of it), each
    with what it may become. A status that is neither ours nor the remote's
    is a bug: InvalidTransition."""

    def __init__(self, name: str, *, remote: tuple[str, ...], final: tuple[str, ...],
                 local: dict[str, tuple[str, ...]] | None = None):
        assert set(final) <= set(remote)
        self.name, self.remote, self.final = name, tuple(remote), frozenset(final)
        self.local = dict(local or {})

    @property
    def table(self) -> dict[str, frozenset[str]]:
        """What each state may become (final states: nothing)."""
        table = {state: frozenset(targets) for state, targets in self.local.items()}
        for state in self.remote:
            table[state] = frozenset() if state in self.final else frozenset(self.remote) - {state}
        return table

    def apply(self, state: str, reported: str) -> str | None:
        """The status to store, or None when the report is a repeat or stale."""
        table = self.table
        if reported not in self.remote or state not in table:
            raise InvalidTransition(self.name, state, f"mirror {reported}")
        if reported == state or state in self.final:
            return None
        if reported not in table[state]:
            raise InvalidTransition(self.name, state, f"mirror {reported}")
        return reported

    def write(self, obj, reported: str) -> bool:
        """Apply a report to ``obj.status`` (the model's one writer calls this): True when applied;
        False for a repeat or a stale report (logged with ids only)."""
        target = self.apply(obj.status, reported)
        if target is None:
            if reported != obj.status:
                logging.getLogger(__name__).info("%s %s: %s reported after %s, ignored", self.name,
                                                 getattr(obj, "id", None), reported, obj.status)
            return False
        obj.status = target
        return True
