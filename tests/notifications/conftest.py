"""Fixtures for the local stand-ins of Twilio's Messages API and an SMTP server
(tests/helpers/fake_servers.py), and ``configure`` for settings.
(clinic, jobs_app and private_limits, which the accounts tests use too: tests/helpers/fixtures_messages.py.)"""
from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers.fake_servers import FakeSmtp, FakeTwilio


@pytest.fixture
def fake_twilio():
    fake = FakeTwilio()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


@pytest.fixture
def fake_smtp():
    fake = FakeSmtp(refuse={"nobody@clinic.example"})
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


# -- app settings for a test ------------------------------------------------------------------------------

@pytest.fixture
def configure(app, monkeypatch):
    """Replace some settings for one test (and forget the cached senders)."""
    def _configure(**overrides):
        monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], **overrides))
        monkeypatch.setitem(app.extensions, "senders", {})
        return app.config["SETTINGS"]
    monkeypatch.setitem(app.extensions, "senders", {})
    return _configure
