"""Payout account fixtures (issue 16): a provider with a profile (staff come enrolled in MFA), and the
Stripe sandbox (the shared ``sandbox`` fixture: tests/helpers/fixtures_payments.py); the post-visit charges'
timings for the tests that charge a signed visit (``visit_settings``)."""
from dataclasses import replace

import pytest


@pytest.fixture
def provider(factories, sandbox):
    return factories.provider(full_name="Dr. Ada Quill")


@pytest.fixture
def other_provider(factories, sandbox):
    return factories.provider(full_name="Dr. Ben Other")


@pytest.fixture
def visit_settings(app, monkeypatch):
    """Post-visit charging's timings in seconds (tests/postvisit/test_charging.py's retry schedule and plan
    interval); this run's queue for the jobs."""
    from app.jobs import set_app
    from tests.postvisit.test_charging import PLAN_INTERVAL, SCHEDULE

    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], VISIT_RETRY_SCHEDULE=SCHEDULE,
                                                        PLAN_INTERVAL=PLAN_INTERVAL))
    set_app(app)
