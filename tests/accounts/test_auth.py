"""Sign-up, sign-in, sign-out, throttling, idle logoff and CSRF."""
import time

from app.models import User
from app.services import audit
from tests.helpers.web import csrf_from, login

GOOD = dict(full_name="Jamie Rivera", email="Jamie@Example.com", phone="(555) 555-0199",
            timezone="America/Chicago", password="a-long-password", confirm="a-long-password")


def test_patient_signs_up_then_signs_in(client, forms, db):
    response = forms.post("/signup", GOOD)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/login")     # the same answer for a taken email
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Thanks for signing up" in page
    assert client.get("/patient").status_code == 302           # nobody is signed in by sign-up
    assert login(client, "jamie@example.com", "a-long-password").headers["Location"].endswith("/patient")
    home = client.get("/patient")
    assert home.status_code == 200
    assert "Hello, Jamie" in home.get_data(as_text=True)
    user = db.query(User).filter_by(email="jamie@example.com").one()
    assert user.phone == "+15555550199"
    assert user.timezone == "America/Chicago"
    assert user.patient is not None
    assert user.password_hash.startswith("$argon2")
    assert audit.actions_for(db, subject_user_id=user.id)[:2] == ["account.patient_registered",
                                                                  "notification.queued"]


def test_signup_bad_input_shows_errors_next_to_fields_and_keeps_what_was_typed(client, forms, db):
    bad = dict(GOOD, email="not-an-email", phone="12", timezone="Mars/Olympus", password="short",
               confirm="different")
    response = forms.post("/signup", bad)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Enter an email like name@example.com." in html
    assert "Enter a phone number with its country code" in html
    assert "Choose a timezone from the list" in html
    assert "Use at least 12 characters." in html
    assert 'value="Jamie Rivera"' in html          # nothing typed is lost
    assert db.query(User).count() == 0


def test_signup_with_a_taken_email_does_not_say_so(client, forms, factories, db):
    # The full check (same answer as a new email, the owner's email) is in test_signup_enumeration.py.
    existing = factories.user("patient", email="taken@example.com")
    response = forms.post("/signup", dict(GOOD, email=existing.email.upper()))
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    assert "already exists" not in client.get("/login").get_data(as_text=True)
    assert db.query(User).count() == 1


def test_htmx_signup_error_returns_only_the_form_fragment(client, forms):
    html = client.get("/signup").get_data(as_text=True)
    response = client.post("/signup", data=dict(GOOD, email="nope", csrf_token=csrf_from(html)),
                           headers={"HX-Request": "true"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<form id="signup-form"')
    assert "<html" not in body
    assert "HX-Request" in response.headers["Vary"]


def test_sign_in_and_out(client, factories, db):
    user = factories.user("provider")
    response = login(client, user.email)
    assert response.status_code == 303 and response.headers["Location"].endswith("/provider")
    assert client.get("/provider").status_code == 200
    html = client.get("/provider").get_data(as_text=True)
    out = client.post("/logout", data={"csrf_token": csrf_from(html)})
    assert out.status_code == 303
    assert client.get("/provider").status_code == 302     # back to sign-in
    assert audit.actions_for(db, subject_user_id=user.id)[-3:] == ["auth.login", "mfa.verified", "auth.logout"]


def test_wrong_password_is_refused_plainly_and_audited(client, factories, db):
    user = factories.user("patient")
    response = login(client, user.email, "wrong-password!")
    assert response.status_code == 422
    assert "do not match an account" in response.get_data(as_text=True)
    assert client.get("/patient").status_code == 302
    rows = audit.actions_for(db, subject_user_id=user.id, outcome="failure")
    assert rows == ["auth.login"]


def test_sign_in_follows_next_but_never_off_site(client, factories):
    user = factories.user("patient")
    html = client.get("/login?next=/patient").get_data(as_text=True)
    ok = client.post("/login?next=/patient", data={"email": user.email, "password": "correct-horse-battery",
                                                    "csrf_token": csrf_from(html)})
    assert ok.headers["Location"].endswith("/patient")
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/patient").get_data(as_text=True))})
    html = client.get("/login").get_data(as_text=True)
    evil = client.post("/login?next=https://evil.example/x", data={
        "email": user.email, "password": "correct-horse-battery", "csrf_token": csrf_from(html)})
    assert evil.headers["Location"] == "/patient"


def test_sign_in_is_throttled_per_account(client, factories):
    user = factories.user("patient")
    codes = [login(client, user.email, "wrong-password!").status_code for _ in range(6)]
    assert codes[:5] == [422] * 5
    assert codes[5] == 429
    # Even the right password waits: the account is throttled, not just the guesses.
    assert login(client, user.email).status_code == 429
    assert "Too many attempts" in login(client, user.email).get_data(as_text=True)
    # Another account from the same address is not locked out by it.
    other = factories.user("patient")
    assert login(client, other.email).status_code == 303


def test_sign_in_is_throttled_per_address(client, factories):
    codes = [login(client, f"nobody{i}@example.test", "wrong-password!").status_code for i in range(21)]
    assert codes[:20] == [422] * 20
    assert codes[20] == 429


def _age_session(client, seconds):
    with client.session_transaction() as session:
        session["last_seen"] = time.time() - seconds


def test_staff_are_signed_out_after_15_idle_minutes(client, login_as, db):
    user = login_as("billing")
    _age_session(client, 14 * 60)
    assert client.get("/billing").status_code == 200
    _age_session(client, 15 * 60 + 5)
    response = client.get("/billing")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "signed out after a period of inactivity" in page
    assert "auth.idle_logoff" in audit.actions_for(db, subject_user_id=user.id)


def test_patients_get_30_idle_minutes(client, login_as):
    login_as("patient")
    _age_session(client, 20 * 60)
    assert client.get("/patient").status_code == 200
    _age_session(client, 31 * 60)
    assert client.get("/patient").status_code == 302


def test_post_without_csrf_token_is_rejected_and_changes_nothing(client, db):
    response = client.post("/signup", data=dict(GOOD))
    assert response.status_code == 400
    assert "Reload the page" in response.get_data(as_text=True)
    assert db.query(User).count() == 0


def test_htmx_post_with_csrf_header_is_accepted_and_without_is_rejected(client, login_as):
    login_as("patient")
    page = client.get("/patient").get_data(as_text=True)
    import re

    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    refused = client.post("/logout", headers={"HX-Request": "true"})
    assert refused.status_code == 400
    accepted = client.post("/logout", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert accepted.status_code == 204
    assert accepted.headers["HX-Redirect"] == "/login"


def test_pages_are_not_cached_and_errors_show_no_trace(client, login_as):
    login_as("patient")
    response = client.get("/patient")
    assert response.headers["Cache-Control"] == "no-store"
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "Traceback" not in missing.get_data(as_text=True)
    assert "Page not found" in missing.get_data(as_text=True)


def test_a_server_error_is_a_plain_page(app, client):
    from app.access import PUBLIC, access

    @access(PUBLIC)
    def explode():
        raise RuntimeError("boom: secret internals")

    app.view_functions["health.healthz"], original = explode, app.view_functions["health.healthz"]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = client.get("/healthz")
    finally:
        app.view_functions["health.healthz"] = original
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong on our side" in body
    assert "secret internals" not in body and "Traceback" not in body
