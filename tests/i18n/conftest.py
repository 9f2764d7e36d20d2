"""The i18n tests use the local Twilio and SMTP stand-ins and ``configure`` of the notification tests."""
from tests.notifications.conftest import configure, fake_smtp, fake_twilio  # noqa: F401
