"""On a phone whose browser prefers Spanish (Chromium, locale es-ES): a patient signs up, verifies
the mobile number with the code texted in Spanish, books and pays through the Stripe sandbox, sees
Spanish pages all the way, and gets the Spanish confirmation by SMS (the local Twilio stand-in) and
email (the local SMTP server) — the real adapters, the real renderer run by the worker (issue 17)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask_babel import force_locale, gettext
from playwright.sync_api import expect
from rq import SimpleWorker

from app.jobs import get_queue, redis_connection, set_app
from tests.helpers.messages import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, PUBLIC_BASE_URL
from tests.helpers.phone import fill_card

pytestmark = pytest.mark.e2e


@pytest.fixture
def es(app):
    """The Spanish of an English string, from the catalogue (so the test follows the translators)."""
    def spanish(text: str, **variables) -> str:
        with app.test_request_context(), force_locale("es"):
            return gettext(text, **variables)
    return spanish


@pytest.fixture
def worker(app):
    set_app(app)
    queue = get_queue("default", app)
    queue.empty()
    yield lambda: SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
    queue.empty()


def spanish_heading(page, es, english: str):
    """The page is in Spanish: <html lang="es"> and the heading in its Spanish words."""
    spanish = es(english)
    assert spanish != english, f"{english!r} has no Spanish in the catalogue"
    expect(page.get_by_role("heading", name=spanish, exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "es"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_a_spanish_speaking_patient_signs_up_books_pays_and_hears_back_in_spanish(
        app, live_server, browser, db, factories, clock, clinic, sandbox, configure, fake_twilio, fake_smtp, worker,
        es):
    from app.jobs.notifications import sweep_notifications
    from app.models import Appointment, User

    configure(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM_NUMBER=FROM_NUMBER,
              TWILIO_API_BASE=fake_twilio.base_url, PUBLIC_BASE_URL=PUBLIC_BASE_URL,
              SMTP_HOST="127.0.0.1", SMTP_PORT=fake_smtp.port, SMTP_STARTTLS=False,
              SMTP_FROM="Riverside Clinic <no-reply@clinic.example>", REMINDER_OFFSETS=(timedelta(minutes=30),))
    visit = factories.appointment_type(name="Video consult", price_cents=12500)
    provider = factories.provider(types=[visit], full_name="Dr. Dana Pay")
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2, locale="es-ES")
    try:
        page = context.new_page()
        # Sign up, in Spanish (the browser's language): the account keeps it.
        page.goto(f"{live_server}/signup")
        spanish_heading(page, es, "Create your account")
        page.get_by_label(es("Full name")).fill("Lucía Gómez")
        page.get_by_label(es("Email")).fill("lucia@example.com")
        page.get_by_label(es("Mobile phone")).fill("(555) 555-0142")
        page.get_by_label(es("Timezone")).fill("America/New_York")
        page.get_by_label(es("Password"), exact=True).fill("a-long-password")
        page.get_by_label(es("Repeat password")).fill("a-long-password")
        page.get_by_role("button", name=es("Create account")).click()
        spanish_heading(page, es, "Sign in")
        db.expire_all()
        lucia = db.query(User).filter_by(email="lucia@example.com").one()
        assert lucia.locale == "es"
        worker()                                                    # "your account is ready", by email
        [welcome] = fake_smtp.messages
        assert welcome["to"] == ["lucia@example.com"]
        assert welcome["message"]["Subject"] == "Su cuenta de Riverside Clinic está lista"

        page.get_by_label(es("Email")).fill("lucia@example.com")
        page.get_by_label(es("Password")).fill("a-long-password")
        page.get_by_role("button", name=es("Sign in")).click()
        page.wait_for_url(lambda url: "/login" not in url)

        # The mobile number: the code comes by SMS, in Spanish.
        page.goto(f"{live_server}/account/phone")
        spanish_heading(page, es, "Your mobile number")
        page.get_by_role("button", name=es("Text me a code")).click()
        expect(page.get_by_role("button", name=es("Text me a new code"))).to_be_visible()   # the code is on its way
        worker()
        [code_sms] = fake_twilio.requests
        body = code_sms["form"]["Body"]
        assert body.startswith("Código de verificación de Riverside Clinic: ")
        code = re.search(r"\b(\d{6})\b", body).group(1)
        page.get_by_label(es("Code from the text message")).fill(code)
        page.get_by_role("button", name=es("Verify")).click()
        expect(page.get_by_text(es("Verified. Reminders and links can come to this number by text."))).to_be_visible()
        db.expire_all()
        assert db.get(User, lucia.id).phone_verified_at is not None

        # Book and pay.
        page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}")
        assert page.evaluate("document.documentElement.lang") == "es"
        page.locator("button.slot").first.click()
        spanish_heading(page, es, "Review your visit")
        page.get_by_role("link", name=es("Continue to payment")).click()
        spanish_heading(page, es, "Pay to book")
        fill_card(page, "4242424242424242")
        page.get_by_role("button", name=es("Pay %(amount)s", amount="$125.00")).click()
        spanish_heading(page, es, "You're booked")
        db.expire_all()
        booked = db.query(Appointment).filter_by(patient_id=lucia.patient.id).one()
        assert booked.status == "confirmed"

        # The confirmation by email and the reminder by SMS (a verified number), both in Spanish.
        worker()
        clock.advance(timedelta(minutes=31))                        # the reminder, 30 minutes before: by SMS
        get_queue("default", app).enqueue(sweep_notifications)
        worker()
        sms = [r["form"]["Body"] for r in fake_twilio.requests[1:]]
        assert any(s.startswith("Recordatorio de Riverside Clinic: su cita es el lunes, 7 de diciembre, 9:00 a.m. EST")
                   for s in sms), sms
        assert all("Video consult" not in s and "Dana" not in s and "Lucía" not in s for s in sms)   # no PHI
        subjects = [m["message"]["Subject"] for m in fake_smtp.messages[1:]]
        assert "Su cita con Riverside Clinic está confirmada" in subjects, subjects
        mail = next(m["message"] for m in fake_smtp.messages[1:]
                    if m["message"]["Subject"] == "Su cita con Riverside Clinic está confirmada")
        assert "su cita está confirmada para el lunes, 7 de diciembre" in mail.get_body(("plain",)).get_content()
    finally:
        context.close()
