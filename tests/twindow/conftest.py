"""T-window fixtures: second-scale timings and a visit a minute (or two hours) away. The payment
fixtures (sandbox, browser_pay, queue, stripe_admin) are the shared ones; plain helpers
(hold_at, run_twindow_jobs, alert_of, messages_to) are in tests/helpers/twindow.py."""
from dataclasses import replace
from datetime import timedelta

import pytest

from tests.helpers.twindow import HOLD_TTL, RELEASE_BEFORE_START, T_WINDOW, hold_at


@pytest.fixture
def seconds(app, monkeypatch):
    """Timings in seconds: T_WINDOW 90 s, RELEASE_BEFORE_START 20 s, HOLD_TTL 30 s."""
    settings = replace(app.config["SETTINGS"], T_WINDOW=T_WINDOW, RELEASE_BEFORE_START=RELEASE_BEFORE_START,
                       HOLD_TTL=HOLD_TTL, POLL_GRACE=timedelta(seconds=10))
    monkeypatch.setitem(app.config, "SETTINGS", settings)
    return settings


@pytest.fixture
def imminent(db, factories, clock, seconds, sandbox):
    """Held a minute before the start: inside the 90 s window; the hold ends 30 s before the start."""
    return hold_at(db, factories, clock, seconds, starts_in=timedelta(seconds=60))


@pytest.fixture
def distant(db, factories, clock, seconds, sandbox):
    """Held two hours before the start: outside the window."""
    return hold_at(db, factories, clock, seconds, starts_in=timedelta(hours=2))
