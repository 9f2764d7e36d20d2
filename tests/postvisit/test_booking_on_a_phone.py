"""A patient books a post-visit type on a phone (360 x 740), in Chromium, through the Stripe
sandbox's Stripe.js: the card is saved with the Payment Element (a SetupIntent), nothing is
charged, and the booking confirms."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e

EXPIRY, CVC, ZIP = "12 / 34", "123", "10001"


def test_a_patient_books_a_post_visit_type_with_4242_and_nothing_is_charged(
        live_server, phone, db, factories, sandbox, stripe_admin):
    from app.models import Appointment, PaymentConsent
    from app.services import card_setup

    visit = factories.appointment_type(name="In-person visit", price_cents=18000, payment_timing="post_visit",
                                       modality="in_person")
    provider = factories.provider(types=[visit], full_name="Dr. Lee After")
    me = factories.user("patient")
    page = phone
    posts = []
    page.on("request", lambda r: posts.append(r.url.split("?")[0]) if r.method == "POST" else None)

    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    expect(page.get_by_text("Nothing to pay now; a card is saved at the next step.")).to_be_visible()
    page.get_by_role("link", name="Continue to save a card").click()

    expect(page.get_by_role("heading", name="Save a card to book")).to_be_visible()
    expect(page.get_by_text("Nothing is charged now.", exact=True)).to_be_visible()
    expect(page.locator("#consent-wording")).to_have_text(card_setup.CONSENT_WORDING)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_label("Card number").fill("4242424242424242")
    page.get_by_label("Expiration (MM / YY)").fill(EXPIRY)
    page.get_by_label("CVC").fill(CVC)
    page.get_by_label("ZIP").fill(ZIP)
    button = page.get_by_role("button", name="Save card and book")
    assert button.bounding_box()["height"] >= 44

    # Without the box ticked nothing is sent.
    page.locator("#consent").evaluate("el => el.removeAttribute('required')")   # past the browser's own check
    button.click()
    expect(page.locator("#consent-message")).to_have_text(
        "Please tick the box to agree to the charge after your visit.")
    assert not [u for u in posts if re.search(r"/setup_intents/[^/]+/confirm$", u)]

    page.get_by_label("I agree: charge my card after the visit as described above.").check()
    button.dblclick()                                  # a second tap does nothing
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    expect(page.get_by_text("Booked. Your card ending 4242 is saved; nothing was charged.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert len([u for u in posts if re.search(r"/setup_intents/[^/]+/confirm$", u)]) == 1

    db.expire_all()
    appointment = db.scalars(select(Appointment).where(Appointment.patient_id == me.patient.id)).one()
    assert appointment.status == "confirmed" and appointment.payment_method_id
    [consent] = db.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment.id)).all()
    assert consent.wording == card_setup.CONSENT_WORDING and consent.card_last4 == "4242"
    assert stripe_admin.intents_of(appointment.patient.stripe_customer_id) == []      # nothing charged
