"""Twilio's inbound SMS and status callbacks, signed with the twilio library's RequestValidator."""
import pytest
from twilio.request_validator import RequestValidator

from app.models import Notification, SmsOptOut
from app.services import audit, field_crypto, notifications
from tests.helpers.messages import AUTH_TOKEN, PUBLIC_BASE_URL

PHONE = "+15555550142"


def opt_out(db):
    """The number's opt-out row: keyed by its look-up hash (the number itself is not stored)."""
    return db.get(SmsOptOut, field_crypto.phone_hash(PHONE))


@pytest.fixture
def twilio_on(configure):
    return configure(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL=PUBLIC_BASE_URL)


def signed_post(client, path, params, *, token=AUTH_TOKEN, url=None):
    signature = RequestValidator(token).compute_signature(url or PUBLIC_BASE_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def sms_from(number, body):
    return {"MessageSid": "SM" + "a" * 32, "AccountSid": "AC" + "0" * 32, "From": number, "To": "+15005550006",
            "Body": body, "NumSegments": "1"}


@pytest.fixture
def verified_patient(db, factories, clock):
    user = factories.user("patient", phone=PHONE)
    user.phone_verified_at = clock.now()
    db.commit()
    return user


@pytest.mark.parametrize("word", ["STOP", "stop", "StopAll", "UNSUBSCRIBE", "cancel", "END", "quit"])
def test_stop_moves_the_patient_to_email(db, client, clinic, twilio_on, verified_patient, word):
    assert notifications.address_for(db, verified_patient) == notifications.Address("sms", PHONE)

    response = signed_post(client, "/twilio/inbound", sms_from(PHONE, f" {word} "))

    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert response.get_data(as_text=True).endswith("<Response />")
    assert opt_out(db).opted_out is True
    assert notifications.address_for(db, verified_patient) == notifications.Address("email", verified_patient.email)
    assert "sms.opted_out" in audit.actions_for(db, subject_user_id=verified_patient.id)
    # A reminder queued now goes by email.
    row = notifications.queue(db, dedupe_key="reminder:test", template="reminder", user=verified_patient,
                              scheduled_for=opt_out(db).updated_at)
    assert (row.channel, row.recipient) == ("email", verified_patient.email)


def test_start_after_stop_allows_sms_again(db, client, clinic, twilio_on, verified_patient):
    signed_post(client, "/twilio/inbound", sms_from(PHONE, "STOP"))
    response = signed_post(client, "/twilio/inbound", sms_from(PHONE, "start"))

    assert response.status_code == 200
    assert "Riverside Clinic" in response.get_data(as_text=True)
    assert opt_out(db).opted_out is False
    assert notifications.address_for(db, verified_patient).channel == "sms"
    assert audit.actions_for(db, subject_user_id=verified_patient.id)[-2:] == ["sms.opted_out", "sms.opted_in"]


def test_help_answers_with_the_clinic_name_and_phone(db, client, clinic, twilio_on):
    response = signed_post(client, "/twilio/inbound", sms_from(PHONE, "HELP"))

    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<Message>" in body and "Riverside Clinic" in body and "+15550100000" in body
    assert opt_out(db) is None


@pytest.mark.parametrize("forge", ["wrong token", "other url", "changed body", "no signature"])
def test_a_request_not_signed_by_twilio_is_refused(db, client, clinic, twilio_on, verified_patient, forge):
    params = sms_from(PHONE, "STOP")
    if forge == "wrong token":
        response = signed_post(client, "/twilio/inbound", params, token="someone-elses-token")
    elif forge == "other url":
        response = signed_post(client, "/twilio/inbound", params, url="https://evil.example/twilio/inbound")
    elif forge == "changed body":
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            PUBLIC_BASE_URL + "/twilio/inbound", sms_from(PHONE, "HELLO"))
        response = client.post("/twilio/inbound", data=params, headers={"X-Twilio-Signature": signature})
    else:
        response = client.post("/twilio/inbound", data=params)

    assert response.status_code == 403
    assert opt_out(db) is None
    assert notifications.address_for(db, verified_patient).channel == "sms"


def sent_sms(db, clock, user, sid="SM" + "b" * 32):
    row = notifications.queue(db, dedupe_key=f"phone_code:{sid}", template="phone_code", user=user,
                              scheduled_for=clock.now(), address=notifications.Address("sms", user.phone))
    row.status, row.provider, row.provider_message_id, row.sent_at = "sent", "twilio", sid, clock.now()
    db.commit()
    return row


def status(client, sid, state, **extra):
    return signed_post(client, "/twilio/status", {"MessageSid": sid, "MessageStatus": state,
                                                  "AccountSid": "AC" + "0" * 32, **extra})


def test_delivered_callback_marks_the_row_delivered(db, client, clock, twilio_on, verified_patient):
    row = sent_sms(db, clock, verified_patient)

    assert status(client, row.provider_message_id, "delivered").status_code == 204

    db.refresh(row)
    assert row.status == "delivered" and row.delivered_at == clock.now()
    assert "notification.delivered" in audit.actions_for(db, subject_user_id=verified_patient.id)


def test_failed_callback_stores_the_error_code(db, client, clock, twilio_on, verified_patient):
    row = sent_sms(db, clock, verified_patient)

    assert status(client, row.provider_message_id, "undelivered", ErrorCode="30003").status_code == 204

    db.refresh(row)
    assert row.status == "failed" and "30003" in row.error


def test_sent_and_queued_callbacks_leave_the_row(db, client, clock, twilio_on, verified_patient):
    row = sent_sms(db, clock, verified_patient)
    for state in ("queued", "sent"):
        assert status(client, row.provider_message_id, state).status_code == 204
    db.refresh(row)
    assert row.status == "sent" and row.error is None


def test_status_callback_with_a_bad_signature_is_refused(db, client, clock, twilio_on, verified_patient):
    row = sent_sms(db, clock, verified_patient)
    response = client.post("/twilio/status", data={"MessageSid": row.provider_message_id,
                                                   "MessageStatus": "failed", "ErrorCode": "30003"},
                           headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})
    assert response.status_code == 403
    db.refresh(row)
    assert row.status == "sent"


def test_unknown_message_sid_is_acknowledged(db, client, twilio_on):
    assert status(client, "SM" + "f" * 32, "delivered").status_code == 204
    assert db.query(Notification).count() == 0


def test_without_twilio_configured_the_endpoints_do_not_exist(db, client, clinic):
    assert signed_post(client, "/twilio/inbound", sms_from(PHONE, "STOP")).status_code == 404
    assert status(client, "SM" + "f" * 32, "delivered").status_code == 404
