"""Message fixtures shared by several folders (notifications, accounts): the clinic's settings,
jobs run in the test's app, and rate-limit counters of the test's own. Registered once, in
tests/conftest.py (``pytest_plugins``)."""
import pytest


@pytest.fixture
def jobs_app(app):
    """Jobs run in this test's app (as the worker's do in its own)."""
    from app.jobs import set_app

    set_app(app)
    return app


@pytest.fixture
def clinic(db):
    from app.services.audit import Actor
    from app.services.clinic import update_clinic

    settings = update_clinic(db, actor=Actor.system("test"), name="Riverside Clinic", phone="+15550100000",
                             address="1 River Rd", timezone="America/New_York")
    db.commit()
    return settings


@pytest.fixture
def private_limits(app, monkeypatch):
    """Rate-limit counters of this test's own: ``limiter.reset()`` in any other test run on the same
    Redis (every ``db`` fixture calls it) deletes every ``LIMITS:*`` key, whatever the namespace."""
    import uuid

    from app.extensions import limiter

    monkeypatch.setattr(limiter.storage, "key_prefix", f"LIMITS-test-{uuid.uuid4().hex}")
