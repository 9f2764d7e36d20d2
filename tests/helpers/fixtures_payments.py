"""Payment fixtures shared by several folders (payments, cards, refunds, chain, twindow, postvisit,
hybrid, ...): the Stripe sandbox, a held appointment, Stripe.js-like browsers (paying, saving a card),
Stripe's own view, this run's queue. Registered once, in tests/conftest.py (``pytest_plugins``); app
modules are imported inside the fixtures, so tests that never use them (tests/stripe_sandbox) never
import the app."""
import pytest


@pytest.fixture
def sandbox(stripe_sandbox):
    if stripe_sandbox is None:
        pytest.fail("payment tests need the Stripe sandbox (unset STRIPE_SECRET_KEY)")
    yield stripe_sandbox
    stripe_sandbox.reset_faults()
    stripe_sandbox.remove_webhook_endpoints()


@pytest.fixture
def held(db, factories, clock, policy, sandbox):
    """A deposit-to-book hold: Monday 10:00 New York, $125.00, for a fresh patient."""
    from app.services import booking
    from app.services.audit import Actor
    from tests.helpers.payments import MON_10_NY

    visit = factories.appointment_type(name="Video consult", price_cents=12500, payment_timing="deposit_to_book")
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=MON_10_NY, policy=policy,
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    return appointment


@pytest.fixture
def browser_pay(sandbox):
    from tests.helpers.payments import Browser

    b = Browser(sandbox)
    yield b
    b.http.close()


@pytest.fixture
def card_browser(sandbox):
    """Saves a card the way Stripe.js's confirmSetup does (publishable key + the SetupIntent's secret)."""
    from tests.helpers.payments import CardBrowser

    b = CardBrowser(sandbox)
    yield b
    b.http.close()


@pytest.fixture
def stripe_admin(sandbox):
    from tests.helpers.payments import StripeAdmin

    admin = StripeAdmin(sandbox)
    yield admin
    admin.http.close()


@pytest.fixture
def queue(app):
    """This run's RQ queue, emptied (ids restart per test, so no stale job may act on a new row)."""
    from app.jobs import get_queue, set_app

    set_app(app)
    q = get_queue("default", app)
    # The webhook drain's "a drain job is waiting" flag goes with the jobs (app/jobs/payments.py).
    flag = f"{app.config['SETTINGS'].REDIS_NAMESPACE}:payments:events_drain"
    _empty(q)
    q.connection.delete(flag)
    yield q
    _empty(q)
    q.connection.delete(flag)


def _empty(q) -> None:
    from rq.exceptions import NoSuchJobError

    q.empty()
    registry = q.scheduled_job_registry
    for job_id in registry.get_job_ids():
        try:
            registry.remove(job_id, delete_job=True)
        except NoSuchJobError:            # its data already expired: drop the entry itself
            q.connection.zrem(registry.key, job_id)
