"""Phone verification: no SMS to an unverified number except its code; wrong codes refused and throttled."""
import re

import pytest

from app.jobs.notifications import send_notification
from app.models import Notification, PhoneVerification, User
from app.services import audit, notifications
from tests.helpers.web import login

PAGE = "/account/phone"
pytestmark = pytest.mark.usefixtures("private_limits")


def sms_rows(db):
    return db.query(Notification).filter_by(channel="sms").order_by(Notification.id).all()


def text_me_a_code(db, forms):
    """Ask for a code and read it from the text message as sent (the dev outbox here)."""
    response = forms.post("/account/phone/send-code", {}, page=PAGE)
    assert response.status_code == 303
    row = sms_rows(db)[-1]
    assert send_notification(row.id) == "delivered"
    db.refresh(row)
    return re.search(r"\b(\d{6})\b", row.body).group(1)


def verify(forms, code):
    return forms.post("/account/phone/verify", {"code": code}, page=PAGE)


def test_unverified_number_gets_only_its_code(db, clock, forms, login_as, clinic, jobs_app):
    user = login_as("patient")
    page = forms.client.get(PAGE).get_data(as_text=True)
    assert user.phone in page and "Not verified yet" in page

    code = text_me_a_code(db, forms)

    # Before the code is entered, a reminder goes by email, not to the unverified number.
    reminder = notifications.queue(db, dedupe_key="reminder:86400:t", template="reminder", user=user,
                                   scheduled_for=clock.now())
    db.commit()
    assert (reminder.channel, reminder.recipient) == ("email", user.email)
    [code_sms] = sms_rows(db)
    assert (code_sms.template, code_sms.recipient) == ("phone_code", user.phone)
    assert "Riverside Clinic" in code_sms.body
    # The code is kept only as a hash.
    stored = db.query(PhoneVerification).one()
    assert code not in stored.code_hash and stored.expires_at == clock.now() + jobs_app.config["SETTINGS"].PHONE_CODE_TTL

    response = verify(forms, code)
    assert response.status_code == 303
    assert "Verified." in forms.client.get(PAGE).get_data(as_text=True)
    db.expire_all()
    assert db.get(User, user.id).phone_verified_at == clock.now()
    assert notifications.address_for(db, db.get(User, user.id)).channel == "sms"
    actions = audit.actions_for(db, subject_user_id=user.id)
    assert "phone.code_sent" in actions and actions[-1] == "phone.verified"


def test_wrong_code_is_refused_and_five_wrong_tries_kill_the_code(db, forms, login_as, clinic, jobs_app):
    user = login_as("patient")
    code = text_me_a_code(db, forms)
    wrong = f"{(int(code) + 1) % 1000000:06d}"

    first = verify(forms, wrong)
    assert first.status_code == 422
    body = first.get_data(as_text=True)
    assert "That code is not right" in body and "4 tries left" in body
    assert f'value="{wrong}"' in body                     # what was typed is kept
    for _ in range(4):
        last = verify(forms, wrong)
    assert "Too many wrong tries" in last.get_data(as_text=True)

    # The right code no longer works either: a new one is needed.
    after = verify(forms, code)
    assert after.status_code == 422 and "Too many wrong tries" in after.get_data(as_text=True)
    db.expire_all()
    assert db.get(User, user.id).phone_verified_at is None
    assert notifications.address_for(db, db.get(User, user.id)).channel == "email"

    new_code = text_me_a_code(db, forms)
    assert verify(forms, new_code).status_code == 303


def test_verification_is_throttled_per_account(db, client, forms, login_as, factories, clinic, jobs_app):
    login_as("patient")
    text_me_a_code(db, forms)
    codes = [verify(forms, "000000").status_code for _ in range(11)]
    assert codes[:10] == [422] * 10
    assert codes[10] == 429
    assert "Too many attempts" in verify(forms, "000000").get_data(as_text=True)

    # Another patient on the same network is not held back by it.
    other = factories.user("patient")
    client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                          client.get("/patient").get_data(as_text=True)).group(1)})
    assert login(client, other.email).status_code == 303
    text_me_a_code(db, forms)
    assert verify(forms, "000000").status_code == 422


def test_expired_code_is_refused(db, clock, forms, login_as, clinic, jobs_app):
    login_as("patient")
    code = text_me_a_code(db, forms)
    clock.advance(jobs_app.config["SETTINGS"].PHONE_CODE_TTL)

    response = verify(forms, code)
    assert response.status_code == 422
    assert "That code has expired" in response.get_data(as_text=True)


def test_a_new_code_replaces_the_old_one(db, forms, login_as, clinic, jobs_app):
    login_as("patient")
    old = text_me_a_code(db, forms)
    new = text_me_a_code(db, forms)
    if old != new:
        assert verify(forms, old).status_code == 422
    assert verify(forms, new).status_code == 303


def test_badly_formed_code_gets_a_clear_message(db, forms, login_as, clinic, jobs_app):
    login_as("patient")
    text_me_a_code(db, forms)
    response = verify(forms, "12ab")
    assert response.status_code == 422
    assert "The code is 6 digits" in response.get_data(as_text=True)
    assert db.query(PhoneVerification).one().attempts == 0


def test_changing_the_number_clears_verification(db, clock, forms, login_as, clinic, jobs_app):
    user = login_as("patient")
    assert verify(forms, text_me_a_code(db, forms)).status_code == 303

    bad = forms.post(PAGE, {"phone": "12"}, page=PAGE)
    assert bad.status_code == 422 and "country code" in bad.get_data(as_text=True)
    assert forms.post(PAGE, {"phone": "+1 555 555 0177"}, page=PAGE).status_code == 303

    db.expire_all()
    changed = db.get(User, user.id)
    assert (changed.phone, changed.phone_verified_at) == ("+15555550177", None)
    assert notifications.address_for(db, changed).channel == "email"
    assert "phone.changed" in audit.actions_for(db, subject_user_id=user.id)
    assert "Not verified yet" in forms.client.get(PAGE).get_data(as_text=True)
