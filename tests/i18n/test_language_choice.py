"""Which language a patient gets (issue 17): their profile's, else the footer switch's cookie, else the
browser's; the switch works without JavaScript; the account page sets the profile's; sign-up keeps
the language the patient signed up in; staff pages stay English (no switch)."""
from __future__ import annotations

from sqlalchemy import select

from app.models import User
from app.services import audit
from tests.helpers.web import csrf_from, login

GOOD = dict(full_name="Lucía Gómez", email="lucia@example.com", phone="(555) 555-0123",
            timezone="America/New_York", password="a-long-password", confirm="a-long-password")
ES = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


def _lang(response) -> str:
    html = response.get_data(as_text=True)
    return html.split('<html lang="', 1)[1].split('"', 1)[0]


def test_the_browser_chooses_for_a_visitor(client):
    assert _lang(client.get("/login", headers=ES)) == "es"
    assert _lang(client.get("/login", headers=EN)) == "en"
    assert _lang(client.get("/login")) == "en"


def test_the_footer_switch_works_without_javascript_and_goes_back(client):
    page = client.get("/login?next=/book", headers=EN).get_data(as_text=True)
    assert '<button type="submit" name="lang" value="es" class="link" lang="es">Español</button>' in page
    assert 'name="next" value="/login?next=/book"' in page
    response = client.post("/language", data={"lang": "es", "next": "/login?next=/book",
                                              "csrf_token": csrf_from(page)}, headers=EN)
    assert response.status_code == 303 and response.headers["Location"] == "/login?next=/book"
    assert "lang=es" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
    spanish = client.get("/login", headers=EN)            # the cookie beats the browser
    assert _lang(spanish) == "es"
    assert '<button type="submit" name="lang" value="en" class="link" lang="en">English</button>' \
        in spanish.get_data(as_text=True)


def test_the_switch_goes_nowhere_else(client):
    page = client.get("/login").get_data(as_text=True)
    for target in ("https://evil.example/", "//evil.example/", "javascript:alert(1)", ""):
        response = client.post("/language", data={"lang": "es", "next": target, "csrf_token": csrf_from(page)})
        assert response.status_code == 303 and response.headers["Location"] == "/", target
    response = client.post("/language", data={"lang": "fr", "next": "/login", "csrf_token": csrf_from(page)})
    assert response.status_code == 303 and "Set-Cookie" not in response.headers or \
        "lang=" not in response.headers.get("Set-Cookie", "")


def test_sign_up_keeps_the_language_the_patient_signed_up_in(client, forms, db):
    client.get("/signup", headers=ES)
    html = client.get("/signup", headers=ES).get_data(as_text=True)
    response = client.post("/signup", data={**GOOD, "csrf_token": csrf_from(html)}, headers=ES)
    assert response.status_code == 303
    user = db.scalar(select(User).where(User.email == "lucia@example.com"))
    assert user.locale == "es"
    html = client.get("/signup", headers=EN).get_data(as_text=True)
    response = client.post("/signup", data={**GOOD, "email": "sam@example.com", "csrf_token": csrf_from(html)},
                           headers=EN)
    assert db.scalar(select(User).where(User.email == "sam@example.com")).locale == "en"


def test_the_profile_beats_the_browser_and_the_account_page_sets_it(client, factories, db):
    patient = factories.user("patient")
    assert login(client, patient.email).status_code == 303
    page = client.get("/account/language", headers=EN)
    assert page.status_code == 200 and _lang(page) == "en"
    html = page.get_data(as_text=True)
    assert 'type="radio"' in html and 'value="es"' in html
    response = client.post("/account/language", data={"language": "es", "csrf_token": csrf_from(html)}, headers=EN)
    assert response.status_code == 303
    db.expire_all()
    assert db.get(User, patient.id).locale == "es"
    assert "account.locale_changed" in audit.actions_for(db, subject_user_id=patient.id)
    after = client.get("/account/language", headers=EN)           # English browser, Spanish profile
    assert _lang(after) == "es"
    assert "Idioma guardado" in after.get_data(as_text=True)      # the confirmation, in the new language
    bad = client.post("/account/language", data={"language": "fr", "csrf_token": csrf_from(html)})
    assert bad.status_code == 422


def test_the_switch_saves_a_signed_in_patients_language(client, factories, db):
    patient = factories.user("patient", locale="es")
    assert login(client, patient.email).status_code == 303
    page = client.get("/patient", headers=ES).get_data(as_text=True)
    response = client.post("/language", data={"lang": "en", "next": "/patient", "csrf_token": csrf_from(page)})
    assert response.status_code == 303
    db.expire_all()
    assert db.get(User, patient.id).locale == "en"        # and so are their messages from now on


def test_staff_pages_have_no_switch(client, login_as):
    login_as("provider")
    html = client.get("/staff/day", headers=ES, follow_redirects=True).get_data(as_text=True)
    assert 'name="lang"' not in html
