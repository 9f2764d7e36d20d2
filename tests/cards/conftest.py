"""Saved-card tests reuse the payment fixtures: the sandbox, a held appointment, a Stripe.js-like browser."""
import pytest
from rq.exceptions import NoSuchJobError

from app.jobs import get_queue, set_app
from tests.payments.conftest import browser_pay, held, sandbox  # noqa: F401
from tests.payments.helpers import stripe_admin  # noqa: F401


def drain(app) -> None:
    """Empty this run's queue and its scheduled jobs (hold expiry, polls), tolerating entries whose job is gone."""
    set_app(app)
    q = get_queue("default", app)
    q.empty()
    registry = q.scheduled_job_registry
    for job_id in registry.get_job_ids():
        try:
            registry.remove(job_id, delete_job=True)
        except NoSuchJobError:
            registry.remove(job_id)


@pytest.fixture(autouse=True)
def _clean_queue(app):
    drain(app)
    yield
    drain(app)
