"""Sign-up does not tell whether an email has an account: a taken email gets the very same answer
as a new one, creates nothing, and its owner is emailed that someone tried."""
import re
from datetime import timedelta

import pytest

from app.jobs.notifications import send_notification
from app.models import Notification, User
from tests.helpers.web import IsolatedClient, csrf_from, login

pytestmark = pytest.mark.usefixtures("private_limits")

ATTEMPT = dict(full_name="Quinn Prober", phone="+1 555 555 0177", timezone="America/Chicago",
               password="orbit-kettle-sage", confirm="orbit-kettle-sage")
# What differs between two answers that are otherwise the same: CSRF tokens, nonces, request ids.
VOLATILE = re.compile(r'(value|nonce|content)="[^"]*"|"X-CSRFToken": "[^"]*"')
STABLE_HEADERS = ("Location", "HX-Redirect", "Content-Type", "Content-Length", "Vary", "Cache-Control")


def visitor(app):
    """A browser of its own (cookie jar), each request in its own app context as in production."""
    return IsolatedClient(app, app.response_class, use_cookies=True)


def sign_up(app, email, *, htmx=False):
    """One visitor (their own cookie jar): open the form, send it, then open what the answer points to."""
    browser = visitor(app)
    token = csrf_from(browser.get("/signup").get_data(as_text=True))
    headers = {"HX-Request": "true"} if htmx else {}
    answer = browser.post("/signup", data={**ATTEMPT, "email": email, "csrf_token": token}, headers=headers)
    target = answer.headers.get("HX-Redirect") or answer.headers.get("Location")
    landing = browser.get(target) if target else None
    return browser, answer, landing


def shape(answer, landing):
    return dict(status=answer.status_code,
                headers={name: answer.headers.get(name) for name in STABLE_HEADERS},
                header_names=sorted({name for name, _ in answer.headers if name != "Set-Cookie"}),
                sets_cookie=sorted({value.split("=", 1)[0] for value in answer.headers.getlist("Set-Cookie")}),
                body=answer.get_data(),
                landing_status=landing.status_code if landing else None,
                landing=VOLATILE.sub("", landing.get_data(as_text=True)) if landing else None)


@pytest.mark.parametrize("htmx", [False, True], ids=["form-post", "htmx"])
def test_a_taken_email_gets_the_same_answer_as_a_new_one(app, db, factories, clinic, htmx):
    owner = factories.user("patient", email="owner@example.com", full_name="Olive Owner")
    owner_hash = owner.password_hash
    _, fresh, fresh_landing = sign_up(app, "newcomer@example.com", htmx=htmx)
    _, taken, taken_landing = sign_up(app, "OWNER@example.com", htmx=htmx)

    assert shape(taken, taken_landing) == shape(fresh, fresh_landing)
    if htmx:
        assert fresh.status_code == 204 and fresh.headers["HX-Redirect"] == "/login"
    else:
        assert fresh.status_code == 303 and fresh.headers["Location"].endswith("/login")
    assert "Thanks for signing up" in taken_landing.get_data(as_text=True)
    assert "already" not in taken_landing.get_data(as_text=True).lower()

    # The taken email made nothing and changed nothing; the new one made its account.
    assert db.query(User).filter(User.email.in_(["owner@example.com", "newcomer@example.com"])).count() == 2
    db.refresh(owner)
    assert owner.password_hash == owner_hash and owner.full_name == "Olive Owner"
    assert owner.phone != "+15555550177"


def test_nobody_is_signed_in_by_either_answer(app, db, factories):
    factories.user("patient", email="owner2@example.com")
    for email in ("owner2@example.com", "brand-new@example.com"):
        browser, _, _ = sign_up(app, email)
        assert browser.get("/patient").status_code == 302
    # The new patient signs in with what they chose; the prober's password opens nothing.
    assert login(visitor(app), "brand-new@example.com", "orbit-kettle-sage").status_code == 303
    assert login(visitor(app), "owner2@example.com", "orbit-kettle-sage").status_code == 422


def test_the_owner_is_told_someone_tried_without_phi(app, db, factories, clinic, jobs_app):
    owner = factories.user("patient", email="olive.owner@example.com", full_name="Olive Owner",
                           phone="+15555550166")
    sign_up(app, owner.email)

    row = db.query(Notification).filter_by(template="signup_attempt").one()
    assert (row.channel, row.recipient, row.user_id) == ("email", owner.email, owner.id)
    assert send_notification(row.id) == "delivered"          # through the same path as the reset email
    db.refresh(row)
    assert row.status == "delivered"
    assert "tried to create" in row.subject and "Riverside Clinic" in row.subject
    assert "/password/forgot" in row.body and "nothing was created" in row.body
    # Nothing the owner does not already know, and nothing of what the prober typed.
    for secret in ("Olive", "Owner", "5555550166", "Quinn", "Prober", "5555550177", "orbit-kettle-sage",
                   "America/Chicago", owner.email):
        assert secret not in row.subject and secret not in row.body, secret


def test_a_new_account_gets_its_own_email_instead(app, db, clinic, jobs_app):
    sign_up(app, "welcome@example.com")
    user = db.query(User).filter_by(email="welcome@example.com").one()
    row = db.query(Notification).filter_by(user_id=user.id).one()
    assert (row.template, row.channel, row.recipient) == ("account_created", "email", "welcome@example.com")
    assert db.query(Notification).filter_by(template="signup_attempt").count() == 0
    assert send_notification(row.id) == "delivered"
    db.refresh(row)
    assert "account is ready" in row.subject and "/login" in row.body


def test_repeated_tries_send_the_owner_at_most_one_email_an_hour(app, db, factories, clock):
    owner = factories.user("patient", email="busy@example.com")
    for _ in range(3):
        sign_up(app, owner.email)
    assert db.query(Notification).filter_by(template="signup_attempt", user_id=owner.id).count() == 1
    clock.advance(timedelta(hours=1))
    sign_up(app, owner.email)
    assert db.query(Notification).filter_by(template="signup_attempt", user_id=owner.id).count() == 2


def test_a_taken_email_with_a_weak_password_gets_the_same_refusal(app, db, factories):
    factories.user("patient", email="weak-owner@example.com")
    answers = []
    for email in ("weak-owner@example.com", "weak-new@example.com"):
        browser = visitor(app)
        token = csrf_from(browser.get("/signup").get_data(as_text=True))
        answer = browser.post("/signup", data={**ATTEMPT, "email": email, "password": "password1234",
                                               "confirm": "password1234", "csrf_token": token})
        answers.append((answer.status_code, VOLATILE.sub("", answer.get_data(as_text=True)).replace(email, "E")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422 and "common or leaked passwords" in answers[0][1]
    assert db.query(Notification).count() == 0


def test_sign_up_is_still_throttled_per_address(app, db, factories):
    factories.user("patient", email="throttle-owner@example.com")
    codes = [sign_up(app, "throttle-owner@example.com" if i % 2 else f"t{i}@example.com")[1].status_code
             for i in range(11)]
    assert codes[:10] == [303] * 10
    assert codes[10] == 429
