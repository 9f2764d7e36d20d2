"""Every patient-facing page, in Spanish, says nothing that is not in the catalogue (issue 17).

Each page a patient (or a patient's one-click link) can open is rendered with the pseudo-translation
of tests/i18n/pseudo.py: a string that went through ``_()`` comes out as ``⟦…⟧``, a date or an
amount the filters formatted as ``⟪…⟫``; any other visible text that is not the seeded data (names,
the clinic's details, visit types, codes, numbers) is an English string someone typed without
``_()``, and fails the test, which names the page and the string.

The pages: every GET route a patient or the public may open, from the app's route table
(``test_every_patient_page_is_checked`` fails on one that is in neither ``PAGES`` nor ``NOT_PAGES``).
The cases with records (a paid visit, a hold, a signed visit with a balance, an intake, a Good
Faith Estimate) reuse tests/foundation/test_phi_views.py's ``clinic`` and its URL builders.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import String, Text, select

from app.access import AUTHENTICATED, PUBLIC, rules_for
from tests.foundation.test_phi_views import PAGES as PHI_PAGES
from tests.foundation.test_phi_views import _intake_of
from tests.foundation.test_phi_views import clinic  # noqa: F401  (the fixture)
from tests.helpers.payments import sign_in
from tests.helpers.web import IsolatedClient
from tests.i18n.pseudo import MARK_CLOSE, MARK_OPEN, pseudo_translation, untranslated, visible_texts

SPANISH = {"Accept-Language": "es-ES,es;q=0.9"}

# Pages that answer only with a redirect, or are not HTML meant for patients to read.
NOT_PAGES = {
    "static": "files", "assets.htmx": "a script",
    "health.healthz": "a probe", "health.readyz": "a probe",
    "booking.ics": "a calendar file: tests/i18n/test_messages_spanish.py checks it in Spanish",
    "booking.statement_pdf": "a PDF: tests/i18n/test_messages_spanish.py checks it in Spanish",
    "intake.card_photo": "an image",
    "checkout.browser_return": "redirects", "checkout.setup_return": "redirects", "pay.browser_return": "redirects",
    "auth.login_mfa": "redirects to sign in unless half signed in (the code step of staff accounts)",
    "intake.resume": "redirects to the intake's next step",
    "intake.for_appointment": "redirects to the visit's intake (its step)",
    "checkout.join": "redirects to the video room",
    "checkout.room": "the video room (the provider's and the patient's; a third-party frame)",
}
# endpoint -> (who opens it: "patient" | "anonymous", URL builder from the clinic fixture's dict)
PAGES = {endpoint: ("patient" if "patient" in roles else "anonymous", url_of)
         for endpoint, (roles, url_of, _names) in PHI_PAGES.items()
         if ("patient" in roles or "anonymous" in roles) and endpoint not in NOT_PAGES}
PAGES.update({
    "home.index": ("anonymous", lambda c: "/"),
    "auth.login": ("anonymous", lambda c: "/login"),
    "auth.signup": ("anonymous", lambda c: "/signup"),
    "account.forgot_password": ("anonymous", lambda c: "/password/forgot"),
    "account.reset_password": ("anonymous", lambda c: "/password/reset/not-a-real-token"),
    "booking.search": ("patient", lambda c: "/book"),
    "booking.provider": ("patient", lambda c: f"/book/providers/{c['provider_id']}"),
    "intake.start": ("patient", lambda c: "/intake/start"),
    "account.language_page": ("patient", lambda c: "/account/language"),
    "auth.mfa_setup": ("patient", lambda c: "/account/mfa"),
    "auth.step_up": ("patient", lambda c: "/mfa/step-up"),
    "waitlist.join_form": ("patient", lambda c: "/waitlist/join"),
})
PAGES.setdefault("waitlist.mine", ("patient", lambda c: "/waitlist"))   # (a PHI page: PHI_PAGES may have it)
# What a case answers when it is not 200.
STATUS = {"account.reset_password": 400,      # a link that is not (or no longer) valid: the page says so
          "intake.start": 400}                # without a visit type it says to choose one (with one: redirects)
# More cases of an endpoint already in PAGES: label -> (who, URL builder). Every step of the intake.
MORE = {f"intake.step({step})": ("patient", lambda c, step=step: f"/intake/{_intake_of(c)['intake_id']}/{step}")
        for step in ("reason", "insurance", "consents", "review")}
# Forms posted empty: the error messages a patient reads (CSRF off for these).
FORM_ERRORS = {
    "auth.signup": ("anonymous", "/signup"),
    "auth.login": ("anonymous", "/login"),
    "account.forgot_password": ("anonymous", "/password/forgot"),
    "account.change_phone": ("patient", "/account/phone"),
    "account.language_page": ("patient", "/account/language"),
}


def _patient_facing(app) -> set[str]:
    out = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint.startswith("fhir."):
            continue      # the FHIR API is for EHR systems (JSON), not patients
        rules = rules_for(app, rule.endpoint) or frozenset()
        if rules & {"patient", PUBLIC, AUTHENTICATED}:
            out.add(rule.endpoint)
    return out


def test_every_patient_page_is_checked(app):
    unlisted = _patient_facing(app) - set(PAGES) - set(NOT_PAGES)
    assert unlisted == set(), ("patient-facing GET routes with no case: add each to PAGES (how to open it) "
                               "or NOT_PAGES (why it is not a page) in tests/i18n/test_pages_spanish.py")


def seeded_strings(db) -> set[str]:
    """Every text value stored in the database (names, the clinic's details, visit types, codes, ...),
    but for enum-like codes ("confirmed", "telehealth"): a page must say those in words."""
    from app.extensions import db as sqla

    values: set[str] = set()
    for mapper in sqla.Model.registry.mappers:
        cls = mapper.class_
        if cls.__tablename__ in ("audit_events", "access_log", "notifications", "stripe_events"):
            continue
        for column in mapper.columns:
            if not isinstance(column.type, (String, Text)) and "Encrypted" not in type(column.type).__name__:
                continue
            key = mapper.get_property_by_column(column).key
            try:
                found = db.scalars(select(getattr(cls, key)).distinct().limit(500)).all()
            except Exception:
                db.rollback()
                continue
            for value in found:
                if isinstance(value, str) and value.strip() and not re.fullmatch(r"[a-z_]+", value.strip()):
                    values.add(value.strip())
    from app.services.clinic import current_clinic

    clinic_ = current_clinic(db)                 # the clinic's details (settings when no row says)
    values |= {v for v in (getattr(clinic_, k, None) for k in ("name", "phone", "address")) if isinstance(v, str)}
    return values


def _client(app, role, clinic_):
    client = IsolatedClient(app, app.response_class, use_cookies=True)
    if role == "patient":
        sign_in(client, clinic_["users"]["patient"])
    return client


def render_spanish(app, db, clinic_):
    """{label: (status, html)} for every case, rendered in Spanish with the pseudo-translation."""
    from app.models import User

    patient = db.get(User, clinic_["patient_user_id"])
    patient.locale = "es"
    db.commit()
    urls = {endpoint: (role, url_of(clinic_)) for endpoint, (role, url_of) in sorted({**PAGES, **MORE}.items())}
    pages = {}
    with pseudo_translation(app):
        clients = {role: _client(app, role, clinic_) for role in ("patient", "anonymous")}
        for endpoint, (role, url) in urls.items():
            response = clients[role].get(url, headers=SPANISH)
            pages[f"GET {endpoint} {url}"] = (response.status_code, response.get_data(as_text=True))
        response = clients["patient"].get("/no-such-page", headers=SPANISH)
        pages["GET (not found) /no-such-page"] = (response.status_code, response.get_data(as_text=True))
        app.config["WTF_CSRF_ENABLED"] = False
        try:
            for endpoint, (role, url) in FORM_ERRORS.items():
                response = _client(app, role, clinic_).post(url, data={}, headers=SPANISH)
                pages[f"POST {endpoint} {url} (empty)"] = (response.status_code, response.get_data(as_text=True))
        finally:
            app.config["WTF_CSRF_ENABLED"] = True
    return pages


def test_no_patient_page_has_text_outside_the_catalogue(app, db, clinic):  # noqa: F811
    pages = render_spanish(app, db, clinic)
    data = seeded_strings(db)
    problems = {}
    for label, (status, html) in pages.items():
        expected = 404 if "(not found)" in label else 422 if label.startswith("POST") else \
            STATUS.get(label.split()[1], 200)
        if status != expected:
            problems[label] = [f"status {status}, expected {expected}"]
            continue
        assert MARK_OPEN in html and MARK_CLOSE in html, f"{label}: nothing came from the catalogue"
        found = untranslated(html, data)
        if found:
            problems[label] = found
    report = "\n".join(f"{label}:\n    " + "\n    ".join(found) for label, found in sorted(problems.items()))
    assert not problems, f"{len(problems)} patient page(s) show text that is not in the catalogue:\n{report}"


# -- the detector itself ------------------------------------------------------------------------

def test_the_detector_reports_an_unmarked_string():
    page = ('<html lang="es"><head><title>⟦Citas⟧ · Clínica Sol</title></head><body>'
            '<h1>⟦Sus citas⟧</h1><p>Book a visit</p>'
            '<input placeholder="Search providers" aria-label="⟦Buscar⟧">'
            '<button type="submit" data-busy-label="Saving…">⟦Guardar⟧</button>'
            '<p>⟦Con %(name)s⟧ Dra. Ana Ruiz · 99213 · ⟪$25.00⟫ · <time>dom, 29 nov</time> · info@sol.example</p>'
            '<form><button lang="en">English</button></form><script>var x = "not text";</script></body></html>')
    found = untranslated(page, {"Clínica Sol", "Dra. Ana Ruiz"})
    assert len(found) == 3, found
    assert any("Book a visit" in f for f in found)
    assert any("Search providers" in f for f in found)
    assert any("Saving…" in f for f in found)


def test_the_detector_passes_a_page_that_is_all_catalogue_and_data():
    page = ('<p>⟦Hola ⟦Ana⟧⟧</p><p>⟪domingo, 29 de noviembre⟫ – ⟪$1,234.56⟫ (#42, G0463)</p>'
            '<a href="/appointments/3">https://clinic.example/a/3</a>')
    assert untranslated(page, {"Ana"}) == []


def test_a_page_without_the_pseudo_translation_is_reported(app, client):
    """Without the pseudo-translation (a Spanish page as a patient sees it), everything is flagged:
    the detector needs the markers, it does not guess."""
    html = client.get("/login", headers=SPANISH).get_data(as_text=True)
    assert MARK_OPEN not in html
    assert visible_texts(html) and untranslated(html)


def test_the_pseudo_translation_marks_marked_strings(app, client):
    with pseudo_translation(app):
        html = client.get("/login", headers=SPANISH).get_data(as_text=True)
    assert MARK_OPEN in html


def test_an_unmarked_string_on_a_real_page_is_caught(app, db):
    """The whole chain on a page built on base.html: the one English sentence typed without _() is
    the one reported (and nothing of the layout, the switch or the footer)."""
    from flask import render_template_string

    page = ('{% extends "base.html" %}{% block content %}<h1>{{ _("Book a visit") }}</h1>'
            '<p>Pick a time that suits you</p><p>{{ 2500|money }} · {{ at|local("%A, %B %-d") }}</p>{% endblock %}')
    from datetime import datetime, timezone

    with app.test_request_context("/book", headers=SPANISH), pseudo_translation(app):
        html = render_template_string(page, at=datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc))
    found = untranslated(html, seeded_strings(db))
    assert len(found) == 1 and "Pick a time that suits you" in found[0], found
