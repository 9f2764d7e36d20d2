"""A provider documents a visit on a laptop (1280 x 800): opens the note from the day view, types the
SOAP note (the draft saves itself), picks a diagnosis from the ICD-10-CM search, adds a billing line,
reviews the total, confirms a fresh authenticator code (step-up) and signs; then sees the signed note."""
from datetime import timedelta

import pytest
from flask import current_app
from playwright.sync_api import expect

from app.models import Appointment
from app.services import codes, emr
from tests.emr.conftest import CONSULT_CENTS
from tests.helpers.phone import sign_in
from tests.helpers.web import current_code

pytestmark = pytest.mark.e2e


def test_a_provider_documents_codes_and_signs_a_visit(live_server, laptop, db, visit, clock):
    codes.search_diagnoses("J06")          # the ICD-10-CM index, built once per process (a few seconds)
    page = laptop
    sign_in(page, live_server, visit.user.email)
    page.goto(f"{live_server}/staff/day", wait_until="load")
    card = page.locator(f"#appt-{visit.appointment.id}")
    expect(card).to_contain_text("Pat Example")
    card.get_by_role("button", name="Start note").click()
    page.wait_for_url(lambda url: "/staff/encounters/" in url)
    expect(page.get_by_role("heading", name="Visit note")).to_be_visible()
    db.expire_all()
    encounter = emr.find_for_appointment(db, visit.appointment.id)
    assert encounter is not None and db.get(Appointment, visit.appointment.id).status == "checked_in"

    # The SOAP note saves itself as it is typed.
    page.get_by_label("Subjective").type("Sore throat for three days, no fever.")
    expect(page.locator("#draft-status")).to_contain_text("Saved 8:00 AM")
    page.get_by_label("Assessment").fill("Viral upper respiratory infection.")
    expect(page.locator("#draft-version")).to_have_value("3")
    db.expire_all()
    assert emr.get(db, encounter.id).subjective == "Sore throat for three days, no fever."

    # A diagnosis from the ICD-10-CM search.
    page.get_by_label("Add a diagnosis").fill("J06.9")
    suggestion = page.locator("#dx-results").get_by_role("button", name="J06.9")
    expect(suggestion).to_be_visible()
    suggestion.click()
    expect(page.locator("#diagnoses")).to_contain_text("1. J06.9 Acute upper respiratory infection, unspecified")

    # A billing line: the code found by its words, one unit, pointing to diagnosis 1.
    # The diagnosis's answer replaced the coding block: type once htmx has settled it (its new
    # inputs listen only after that), as a person would.
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    page.get_by_label("Billing code").fill("consultation")
    expect(page.locator("#code-results")).to_contain_text("LOCAL LOC-CONSULT")
    page.locator("#code-results").get_by_label("LOCAL LOC-CONSULT").check()
    expect(page.get_by_label("1 · J06.9")).to_be_checked()
    page.get_by_role("button", name="Add line").click()
    expect(page.locator("#line-1")).to_contain_text("LOCAL LOC-CONSULT")
    expect(page.locator("#total")).to_contain_text("Total $150.00")
    # The autosave still has the latest version after the coding changes (no conflict with itself).
    page.get_by_label("Plan").fill("Fluids, rest; return if worse.")
    expect(page.locator("#draft-status")).to_contain_text("Saved")
    expect(page.locator("#draft-status .banner")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    # Review, then sign: the code from the sign-in is too old, so a fresh one is asked for first.
    page.get_by_role("link", name="Review and sign").click()
    page.wait_for_url(lambda url: url.endswith("/review"))
    expect(page.locator("#review-total")).to_contain_text("Total $150.00")
    clock.advance(timedelta(minutes=16))
    page.get_by_role("button", name="Sign note").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Code", exact=True).fill(current_code(current_app._get_current_object(), visit.user.email))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(lambda url: url.endswith("/review"))
    page.get_by_role("button", name="Sign note").click()
    page.wait_for_url(lambda url: url.endswith(f"/staff/encounters/{encounter.id}"))

    expect(page.get_by_role("heading", name="Visit note Signed")).to_be_visible()
    expect(page.locator("#signature")).to_contain_text("Signed by Dr. Ada Quill")
    expect(page.locator("#signed-total")).to_contain_text("Total $150.00")
    expect(page.get_by_text("Sore throat for three days, no fever.")).to_be_visible()
    db.expire_all()
    signed = emr.get(db, encounter.id)
    assert signed.is_signed and signed.total_cents == CONSULT_CENTS
    expect(page.locator("#signature")).to_contain_text(signed.content_hash[:16])
    assert signed.plan == "Fluids, rest; return if worse."
    assert db.get(Appointment, visit.appointment.id).status == "completed"

    # A correction is an addendum, shown under the note.
    page.get_by_label("Add addendum").fill("Rapid strep negative.")
    page.get_by_role("button", name="Sign and add addendum").click()
    expect(page.locator("#addendum-1")).to_contain_text("Rapid strep negative.")


def test_two_tabs_on_one_draft_get_a_conflict_and_keep_the_typed_text(live_server, browser, db, visit, clock):
    enc = emr.open_encounter(db, visit.appointment, actor=visit.actor, user=visit.user, now=clock.now(),
                             source="day_view")
    db.commit()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        tab_a = context.new_page()
        sign_in(tab_a, live_server, visit.user.email)
        tab_b = context.new_page()
        for tab in (tab_a, tab_b):
            tab.goto(f"{live_server}/staff/encounters/{enc.id}", wait_until="load")
        tab_a.get_by_label("Subjective").fill("Written in tab A.")
        expect(tab_a.locator("#draft-status")).to_contain_text("Saved")

        tab_b.get_by_label("Subjective").fill("Written in tab B.")
        banner = tab_b.locator("#draft-status [role=alert]")
        expect(banner).to_contain_text("This note was changed in another tab or window — your text is kept below")
        expect(tab_b.get_by_label("Subjective")).to_have_value("Written in tab B.")     # nothing lost
        db.expire_all()
        assert emr.get(db, enc.id).subjective == "Written in tab A."                     # nothing overwritten

        tab_b.get_by_label("Plan").fill("More typing in tab B.")                        # still refused, still kept
        expect(tab_b.get_by_label("Plan")).to_have_value("More typing in tab B.")
        expect(banner).to_be_visible()
        tab_b.get_by_role("button", name="Keep my text as the note").click()            # an informed choice
        expect(tab_b.locator("#draft-status")).to_contain_text("Saved")
        db.expire_all()
        saved = emr.get(db, enc.id)
        assert (saved.subjective, saved.plan) == ("Written in tab B.", "More typing in tab B.")
    finally:
        context.close()
