"""A patient books on a phone: search by specialty, pick a clinician and a slot,
see the hold's countdown; another patient's browser no longer sees that slot."""
import pytest
from playwright.sync_api import expect

from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e


def test_patient_searches_picks_a_slot_and_the_slot_disappears_for_others(live_server, browser, phone, factories,
                                                                         clock):
    cardio, derm = factories.specialty("Cardiology"), factories.specialty("Dermatology")
    visit = factories.appointment_type(name="Video consult")
    factories.provider(types=[visit], specialty=cardio, full_name="Dr. Alice Heart")
    factories.provider(types=[visit], specialty=derm, full_name="Dr. Bob Skin")
    first, second = factories.user("patient"), factories.user("patient")

    page = phone
    sign_in(page, live_server, first.email)
    page.get_by_role("link", name="Book a visit").first.click()
    page.wait_for_load_state("load")          # htmx has processed the page
    page.get_by_label("Specialty").select_option(label="Dermatology")
    # htmx swaps the results in place.
    expect(page.locator("#results").get_by_text("Dr. Alice Heart")).to_have_count(0)
    page.locator("#results").get_by_role("link", name="Dr. Bob Skin", exact=True).click()
    page.get_by_role("heading", name="Dr. Bob Skin").wait_for()
    slot = page.locator("button.slot").first
    starts_at = slot.get_attribute("value")
    slot.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    timer = page.get_by_role("timer")
    assert "left" in timer.inner_text()
    assert page.locator(".remaining").inner_text() in ("10:00", "9:59", "9:58")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        other = context.new_page()
        sign_in(other, live_server, second.email)
        other.goto(page.url.split("/book/")[0] + "/book", wait_until="load")
        other.get_by_label("Specialty").select_option(label="Dermatology")
        expect(other.locator("#results").get_by_text("Dr. Alice Heart")).to_have_count(0)
        other.locator("#results").get_by_role("link", name="Dr. Bob Skin", exact=True).click()
        other.get_by_role("heading", name="Dr. Bob Skin").wait_for()
        assert other.locator(f'button.slot[value="{starts_at}"]').count() == 0
        assert other.locator("button.slot").count() > 0
    finally:
        context.close()


def test_a_slot_taken_meanwhile_shows_nearest_times_not_an_error(live_server, browser, phone, factories, clock,
                                                                db, policy):
    from app.services import booking
    from app.services.audit import Actor

    visit = factories.appointment_type(name="Video consult")
    provider = factories.provider(types=[visit], full_name="Dr. Carol Care")
    me, rival = factories.user("patient"), factories.patient()
    page = phone
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}")
    slot = page.locator("button.slot").first
    from datetime import datetime

    booking.take_hold(db, now=clock.now(), patient=rival, provider_id=provider.id, type_id=visit.id,
                      starts_at=datetime.fromisoformat(slot.get_attribute("value")), policy=policy,
                      actor=Actor.system("test"))
    db.commit()
    slot.click()
    page.get_by_text("that time was just taken").wait_for()
    page.get_by_role("heading", name="Nearest free times").wait_for()
    assert page.locator("#slot-list button.slot").count() > 0
