"""The Twilio and SMTP adapters with their real client libraries, against local stand-ins."""
import base64

import pytest

from app.integrations.messaging import OutgoingMessage, SendError, SendOutcomeUnknown
from app.integrations.smtp_email import SmtpEmail
from app.integrations.twilio_sms import TwilioSms
from tests.helpers.messages import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Visit\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"


def twilio(fake) -> TwilioSms:
    return TwilioSms(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=FROM_NUMBER,
                     status_callback="https://portal.clinic.example/twilio/status", api_base=fake.base_url)


def sms(to="+15555550123", text="Riverside Clinic: your visit is tomorrow."):
    return OutgoingMessage(channel="sms", to=to, text=text, reference="17")


def test_twilio_sends_the_right_request_and_returns_the_message_sid(fake_twilio):
    result = twilio(fake_twilio).send(sms())

    assert len(fake_twilio.requests) == 1
    request = fake_twilio.requests[0]
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request["form"] == {"To": "+15555550123", "From": FROM_NUMBER,
                               "Body": "Riverside Clinic: your visit is tomorrow.",
                               "StatusCallback": "https://portal.clinic.example/twilio/status"}
    scheme, credentials = request["headers"]["Authorization"].split(" ", 1)
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
    assert result.provider == "twilio"
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.status == "queued"


def test_twilio_invalid_number_is_a_permanent_error(fake_twilio):
    fake_twilio.fail_next(400, 21211, "The 'To' number +1555 is not a valid phone number.")
    with pytest.raises(SendError) as raised:
        twilio(fake_twilio).send(sms(to="+1555"))
    assert raised.value.permanent is True
    assert "21211" in str(raised.value)
    assert "+1555" not in str(raised.value)          # no numbers or bodies in our errors and logs


def test_twilio_server_error_is_transient(fake_twilio):
    fake_twilio.fail_next(500, 20500, "Internal Server Error")
    with pytest.raises(SendError) as raised:
        twilio(fake_twilio).send(sms())
    assert raised.value.permanent is False


def test_twilio_unreachable_is_transient(fake_twilio):
    sender = twilio(fake_twilio)
    fake_twilio.server.shutdown()
    fake_twilio.server.server_close()
    with pytest.raises(SendError) as raised:
        sender.send(sms())
    assert raised.value.permanent is False
    assert not isinstance(raised.value, SendOutcomeUnknown)      # nothing reached Twilio: a plain retry


def smtp(fake) -> SmtpEmail:
    return SmtpEmail(host="127.0.0.1", port=fake.port, from_addr="Riverside Clinic <no-reply@clinic.example>",
                     starttls=False, timeout=5)


def test_smtp_delivers_text_html_and_the_calendar_file(fake_smtp):
    message = OutgoingMessage(channel="email", to="pat@example.test", subject="Your visit is booked",
                              text="See you on Monday at 9:00 AM.", html="<p>See you on <b>Monday</b>.</p>",
                              attachments=(("appointment.ics", "text/calendar", ICS),), reference="5")
    result = smtp(fake_smtp).send(message)

    assert len(fake_smtp.messages) == 1
    arrived = fake_smtp.messages[0]
    assert arrived["to"] == ["pat@example.test"]
    assert arrived["from"] == "no-reply@clinic.example"
    mail = arrived["message"]
    assert mail["Subject"] == "Your visit is booked"
    assert mail["Message-ID"] == result.provider_message_id
    assert mail.get_body(preferencelist=("plain",)).get_content().strip() == "See you on Monday at 9:00 AM."
    assert mail.get_body(preferencelist=("html",)).get_content().strip() == "<p>See you on <b>Monday</b>.</p>"
    attachments = list(mail.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["appointment.ics"]
    assert attachments[0].get_content_type() == "text/calendar"
    assert attachments[0].get_payload(decode=True) == ICS
    assert result.provider == "smtp" and result.status == "sent"


def test_smtp_refused_recipient_is_a_permanent_error(fake_smtp):
    message = OutgoingMessage(channel="email", to="nobody@clinic.example", subject="Hello", text="Hi.")
    with pytest.raises(SendError) as raised:
        smtp(fake_smtp).send(message)
    assert raised.value.permanent is True
    assert fake_smtp.messages == []


def test_smtp_server_down_is_transient(fake_smtp):
    sender = smtp(fake_smtp)
    fake_smtp.server.shutdown()
    fake_smtp.server.server_close()
    with pytest.raises(SendError) as raised:
        sender.send(OutgoingMessage(channel="email", to="pat@example.test", subject="Hello", text="Hi."))
    assert raised.value.permanent is False


def test_smtp_message_id_is_derived_from_the_notification(fake_smtp):
    message = OutgoingMessage(channel="email", to="pat@example.test", subject="Hello", text="Hi.",
                              reference="5", key="notification.5.0123456789abcdef")
    sender = smtp(fake_smtp)
    assert sender.build(message)["Message-ID"] == "<notification.5.0123456789abcdef@clinic.example>"
    assert sender.build(message)["Message-ID"] == sender.build(message)["Message-ID"]
    result = sender.send(message)
    assert result.provider_message_id == "<notification.5.0123456789abcdef@clinic.example>"
    assert fake_smtp.messages[0]["message"]["Message-ID"] == result.provider_message_id


def test_smtp_waits_longer_for_the_reply_to_the_message_than_for_commands(fake_smtp):
    fake_smtp.data_reply_delay = 0.6
    sender = SmtpEmail(host="127.0.0.1", port=fake_smtp.port, from_addr="no-reply@clinic.example",
                       starttls=False, timeout=0.2, data_timeout=3)
    result = sender.send(OutgoingMessage(channel="email", to="pat@example.test", subject="Hello", text="Hi."))
    assert result.status == "sent" and len(fake_smtp.messages) == 1


def test_smtp_no_reply_after_the_message_is_an_unknown_outcome_not_a_retry(fake_smtp):
    from app.integrations.messaging import SendOutcomeUnknown

    fake_smtp.data_reply_delay = 1.0
    sender = SmtpEmail(host="127.0.0.1", port=fake_smtp.port, from_addr="no-reply@clinic.example",
                       starttls=False, timeout=0.2, data_timeout=0.3)
    with pytest.raises(SendOutcomeUnknown) as raised:
        sender.send(OutgoingMessage(channel="email", to="pat@example.test", subject="Hello", text="Hi."))
    assert "unconfirmed" in str(raised.value) and "pat@example.test" not in str(raised.value)
    assert len(fake_smtp.messages) == 1


def test_twilio_answering_after_the_timeout_is_an_unknown_outcome_not_a_retry(fake_twilio, slow_twilio):
    """The request was written and Twilio created the message; only its answer was late. Retrying
    would send the SMS twice, so the sender says the outcome is unknown."""
    slow_twilio(1.0)
    sender = TwilioSms(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=FROM_NUMBER,
                       api_base=fake_twilio.base_url, timeout=0.3)
    with pytest.raises(SendOutcomeUnknown) as raised:
        sender.send(sms())
    assert "unconfirmed" in str(raised.value) and "+1555" not in str(raised.value)
    assert len(fake_twilio.requests) == 1
