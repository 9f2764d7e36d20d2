"""Sessions that end: a server-side row per sign-in that sign-out, a password reset and an admin
revoke, with an absolute lifetime (12 h; 30 days for a patient's "remember me")."""
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.models import UserSession
from app.services import audit, passwords
from tests.helpers.web import csrf_from, login

pytestmark = pytest.mark.usefixtures("private_limits")


def cookie_of(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "not signed in: no session cookie"
    return cookie.value


def replay(app, cookie: str):
    """A fresh browser that presents a copied session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def sign_out(client, page="/patient"):
    html = client.get(page).get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 303


def rows_of(db, user):
    db.expire_all()
    return list(db.scalars(select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.created_at)))


def test_sign_out_makes_a_copied_cookie_useless(app, client, login_as, db):
    user = login_as("patient")
    stolen = cookie_of(client)
    assert replay(app, stolen).get("/patient").status_code == 200       # a copy works while signed in

    sign_out(client)

    response = replay(app, stolen).get("/patient")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    [row] = rows_of(db, user)
    assert row.revoked_at is not None and row.revoked_reason == "signed_out"
    assert audit.actions_for(db, subject_user_id=user.id)[-1] == "auth.logout"


def test_staff_sign_out_ends_their_session_too(app, client, login_as):
    login_as("provider")
    stolen = cookie_of(client)
    sign_out(client, "/provider")
    response = replay(app, stolen).get("/provider")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_password_reset_ends_every_session_of_the_account(app, client, factories, db, forms):
    user = factories.user("patient")
    laptop, phone = app.test_client(), app.test_client()
    for browser in (laptop, phone):
        assert login(browser, user.email).status_code == 303
        assert browser.get("/patient").status_code == 200
    stolen = cookie_of(laptop)

    token = passwords.request_reset(db, email=user.email, now=app.extensions["clock"].now(),
                                    ttl=timedelta(minutes=30), secret_key=app.config["SECRET_KEY"],
                                    base_url="http://localhost", actor=audit.Actor("anonymous"))
    db.commit()
    path = passwords.reset_path(passwords.sign(app.config["SECRET_KEY"], token.id))
    done = forms.post(path, {"password": "a-brand-new-long-password", "confirm": "a-brand-new-long-password"})
    assert done.status_code == 303, done.get_data(as_text=True)

    for browser in (laptop, phone, replay(app, stolen)):
        response = browser.get("/patient")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert all(row.revoked_reason == "password_reset" for row in rows_of(db, user))
    assert "auth.sessions_revoked" in audit.actions_for(db, subject_user_id=user.id)
    # The new password signs in again.
    assert login(app.test_client(), user.email, "a-brand-new-long-password").status_code == 303


def test_an_admin_signs_an_account_out_everywhere_and_it_is_audited(app, client, login_as, factories, db, forms):
    provider = factories.user("provider")
    desk, home = app.test_client(), app.test_client()
    for browser in (desk, home):
        assert login(browser, provider.email).status_code == 303
    admin = login_as("admin")

    staff_page = client.get("/admin/staff").get_data(as_text=True)
    assert f"/admin/users/{provider.id}/sessions/revoke" in staff_page
    response = forms.post(f"/admin/users/{provider.id}/sessions/revoke", {}, page="/admin/staff")
    assert response.status_code == 303
    assert "Signed out of 2 sessions" in client.get("/admin/staff").get_data(as_text=True)

    for browser in (desk, home):
        answer = browser.get("/provider")
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    assert client.get("/admin/staff").status_code == 200          # the admin's own session goes on
    assert "auth.sessions_revoked" in audit.actions_for(db, subject_user_id=provider.id, actor_id=admin.id)


def test_a_session_ends_at_its_absolute_lifetime_whatever_the_activity(app, client, login_as, db, raw_conn):
    user = login_as("billing")
    [row] = rows_of(db, user)
    assert row.expires_at - row.created_at == timedelta(hours=12)
    assert client.get("/billing").status_code == 200

    # Twelve hours later (the request itself is fresh: the idle stamp is seconds old).
    raw_conn.execute("UPDATE user_sessions SET created_at = now() - interval '12 hours 1 second', "
                     "expires_at = now() - interval '1 second' WHERE user_id = %s", (user.id,))
    response = client.get("/billing")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your session has ended" in page


def test_patients_are_signed_in_for_12_hours_unless_they_ask_to_be_remembered(app, factories, db):
    user = factories.user("patient")
    plain, kept = app.test_client(), app.test_client()
    assert login(plain, user.email).status_code == 303
    assert login(kept, user.email, remember=True).status_code == 303
    short, remembered = rows_of(db, user)
    assert short.expires_at - short.created_at == timedelta(hours=12) and not short.remember
    assert remembered.expires_at - remembered.created_at == timedelta(days=30) and remembered.remember

    # "Remember me" keeps the cookie after the browser closes; without it the cookie dies with it.
    assert plain.get_cookie("session").expires is None
    assert kept.get_cookie("session").expires is not None

    # The remembered session is not signed out after the patients' 30 idle minutes.
    for browser in (plain, kept):
        with browser.session_transaction() as session:
            session["last_seen"] = time.time() - 31 * 60
    assert plain.get("/patient").status_code == 302
    assert kept.get("/patient").status_code == 200


def test_staff_cannot_be_remembered(app, factories, db):
    user = factories.user("provider")
    browser = app.test_client()
    assert login(browser, user.email, remember=True).status_code == 303
    [row] = rows_of(db, user)
    assert row.expires_at - row.created_at == timedelta(hours=12) and not row.remember
    assert browser.get_cookie("session").expires is None


def test_a_forged_or_unknown_session_token_is_anonymous(app, client, login_as):
    login_as("patient")
    with client.session_transaction() as session:
        session["sid"] = "not-a-real-session-token"
    response = client.get("/patient")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
