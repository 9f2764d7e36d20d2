"""Saved-card tests reuse the shared payment fixtures (tests/helpers/fixtures_payments.py: the
sandbox, a held appointment, a Stripe.js-like browser); each starts and ends with an empty queue."""
import pytest

from tests.helpers.payments import drain


@pytest.fixture(autouse=True)
def _clean_queue(app):
    drain(app)
    yield
    drain(app)
