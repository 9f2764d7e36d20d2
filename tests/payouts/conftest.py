"""Payout account fixtures (issue 16): a provider with a profile (staff come enrolled in MFA), and the
Stripe sandbox (the shared ``sandbox`` fixture: tests/helpers/fixtures_payments.py)."""
import pytest


@pytest.fixture
def provider(factories, sandbox):
    return factories.provider(full_name="Dr. Ada Quill")


@pytest.fixture
def other_provider(factories, sandbox):
    return factories.provider(full_name="Dr. Ben Other")
