"""Password reset by email: the same answer for everyone, a link that works once and expires."""
import itertools
import re

import pytest

from app.jobs.notifications import send_notification
from app.models import LinkToken, Notification
from app.services import audit
from tests.helpers.web import login

pytestmark = pytest.mark.usefixtures("private_limits")
N = itertools.count(1)
SENT = "If an account exists for that email, we sent it a link"


def ask(forms, email):
    return forms.post("/password/forgot", {"email": email})


def link_from_email(db, user):
    row = db.query(Notification).filter_by(template="password_reset", user_id=user.id).order_by(
        Notification.id.desc()).first()
    assert (row.channel, row.recipient) == ("email", user.email)
    assert send_notification(row.id) == "delivered"
    db.refresh(row)
    return re.search(r"https?://\S+/password/reset/\S+", row.body).group(0)


def path_of(link):
    return "/password/reset/" + link.rsplit("/password/reset/", 1)[1]


def test_reset_works_once(db, client, forms, factories, clinic, jobs_app):
    user = factories.user("patient", email=f"pat{next(N)}@example.com")
    response = ask(forms, user.email.upper())
    assert response.status_code == 200 and SENT in response.get_data(as_text=True)
    path = path_of(link_from_email(db, user))

    # Opening the link (twice, as a mail app's preview would) does not use it.
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200 and "Choose a new password" in page.get_data(as_text=True)
    assert db.query(LinkToken).one().used_at is None

    short = forms.post(path, {"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 12 characters" in short.get_data(as_text=True)
    done = forms.post(path, {"password": "a-new-long-password", "confirm": "a-new-long-password"})
    assert done.status_code == 303 and done.headers["Location"] == "/login"

    assert login(client, user.email, "correct-horse-battery").status_code == 422
    assert login(client, user.email, "a-new-long-password").status_code == 303
    client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                          client.get("/patient").get_data(as_text=True)).group(1)})
    again = client.get(path)
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    assert "Send me a new link" in again.get_data(as_text=True)
    actions = audit.actions_for(db, subject_user_id=user.id)
    assert "password.reset_requested" in actions and "password.reset" in actions


def test_unknown_email_gets_the_same_answer_and_no_email(db, forms, clinic):
    response = ask(forms, "nobody-here@example.com")
    assert response.status_code == 200 and SENT in response.get_data(as_text=True)
    assert db.query(Notification).count() == 0 and db.query(LinkToken).count() == 0


def test_link_expires(db, clock, client, forms, factories, clinic, jobs_app):
    user = factories.user("patient", email=f"pat{next(N)}@example.com")
    ask(forms, user.email)
    path = path_of(link_from_email(db, user))
    clock.advance(jobs_app.config["SETTINGS"].PASSWORD_RESET_TTL)

    page = client.get(path)
    assert page.status_code == 410 and "has expired" in page.get_data(as_text=True)
    post = forms.post(path, {"password": "a-new-long-password", "confirm": "a-new-long-password"}, page="/password/forgot")
    assert post.status_code == 410
    assert login(client, user.email, "a-new-long-password").status_code == 422


def test_tampered_link_is_refused(db, client, forms, factories, clinic, jobs_app):
    user = factories.user("patient", email=f"pat{next(N)}@example.com")
    ask(forms, user.email)
    path = path_of(link_from_email(db, user))
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")

    page = client.get(tampered)
    assert page.status_code == 400 and "not valid" in page.get_data(as_text=True)
    post = forms.post(tampered, {"password": "a-new-long-password", "confirm": "a-new-long-password"},
                      page="/password/forgot")
    assert post.status_code == 400
    assert db.query(LinkToken).one().used_at is None


def test_a_newer_link_replaces_the_older(db, client, forms, factories, clinic, jobs_app):
    user = factories.user("patient", email=f"pat{next(N)}@example.com")
    ask(forms, user.email)
    first = path_of(link_from_email(db, user))
    ask(forms, user.email)
    second = path_of(link_from_email(db, user))
    assert client.get(first).status_code == 410
    assert client.get(second).status_code == 200


def test_forgot_is_throttled_per_email(db, forms, factories, clinic):
    user = factories.user("patient", email=f"pat{next(N)}@example.com")
    codes = [ask(forms, user.email).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert db.query(Notification).count() == 3
    assert ask(forms, "someone-else@example.com").status_code == 200


def test_forgot_is_throttled_per_address(db, forms, clinic):
    codes = [ask(forms, f"person{i}@example.com").status_code for i in range(11)]
    assert codes == [200] * 10 + [429]


def test_bad_email_gets_a_clear_message(db, forms, clinic):
    response = ask(forms, "not-an-email")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Enter an email like name@example.com." in body and 'value="not-an-email"' in body
