"""Dispute fixtures (issue 16): Stripe's "later" moved by hand (a dispute opening, its outcome), a
visit whose evidence could leak (its type "Oncology follow-up", a specialty, a signed note with text,
a diagnosis and a code, messages, a telehealth join from an IP address), paid with the sandbox's
dispute card 4000000000000259 through the app's deposit-to-book flow.

(sandbox, browser_pay, stripe_admin and queue are the shared payment fixtures:
tests/helpers/fixtures_payments.py.)"""
from __future__ import annotations

import pytest

from tests.disputes import steps


@pytest.fixture
def later_by_hand(sandbox):
    """While the test runs, Stripe's "later" (the dispute card's dispute opening, a submitted dispute's
    outcome) happens only when the test moves the sandbox's clock: ``later_by_hand()`` does, and runs
    the sandbox's timers. Restored afterwards (other tests rely on the real-time default)."""
    before = sandbox.admin("GET", "later")["later_seconds"]
    sandbox.set_later(steps.LATER)
    yield lambda: sandbox.advance_clock(steps.LATER + 1)
    sandbox.set_later(before)


@pytest.fixture
def billing_user(factories):
    return factories.user("billing", full_name="Bailey Billing")


@pytest.fixture(autouse=True)
def ledger_balanced(db):
    """After each test: every ledger transaction sums to zero."""
    yield
    db.rollback()
    steps.assert_ledger_balanced(db)


@pytest.fixture
def visit(db, client, factories, clock, policy, sandbox, browser_pay, queue, later_by_hand, billing_user):
    """visit(card=DISPUTE_CARD, happened=True) -> steps.Visit: booked and paid (deposit-to-book,
    captured); when ``happened``, also attended (patient joined by video, checked in) and its note
    signed with text, a diagnosis and a code."""
    def _visit(card: str = steps.DISPUTE_CARD, happened: bool = True, **type_fields) -> steps.Visit:
        found = steps.book_and_pay(db, factories, clock, policy, browser_pay, card=card, **type_fields)
        if happened:
            steps.attend_and_sign(db, client, found, clock)
        return found
    return _visit
