"""Fixtures for the local stand-ins of Twilio's Messages API and an SMTP server
(tests/helpers/fake_servers.py), and ``configure`` for settings.
(clinic, jobs_app and private_limits, which the accounts tests use too: tests/helpers/fixtures_messages.py.)"""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tests.helpers.fake_servers import FakeSmtp, FakeTwilio, serving


@pytest.fixture
def fake_twilio():
    with serving(FakeTwilio()) as fake:
        yield fake


@pytest.fixture
def slow_twilio(fake_twilio):
    """``slow_twilio(delay)``: from then on the fake Twilio takes each request (the message is created,
    and will go) but answers only after ``delay`` seconds — slower than a client's timeout, say."""
    def slow(delay: float):
        handler = fake_twilio.server.RequestHandlerClass

        class Slow(handler):
            def send_response(self, *args, **kwargs):
                time.sleep(delay)
                super().send_response(*args, **kwargs)

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except OSError:              # the client hung up while we were slow
                    self.close_connection = True

        fake_twilio.server.RequestHandlerClass = Slow
        return fake_twilio
    return slow


@pytest.fixture
def fake_smtp():
    with serving(FakeSmtp(refuse={"nobody@clinic.example"})) as fake:
        yield fake


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
