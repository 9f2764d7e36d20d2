"""After an htmx form redirects (HX-Redirect), the phone shows the whole next page: the top bar,
the main navigation and the flash message, not a fragment swapped into the body."""
from datetime import datetime, timezone

import pytest
from playwright.sync_api import expect

from tests.helpers.phone import has_page_chrome, sign_in

pytestmark = pytest.mark.e2e


def test_text_me_a_code_keeps_the_header_navigation_and_says_the_code_was_sent(live_server, phone, factories,
                                                                                 clock):
    me = factories.user("patient", phone="+15555550123")
    page = phone
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/account/phone", wait_until="load")     # htmx has processed the page
    page.get_by_role("button", name="Text me a code").click()

    expect(page.get_by_text("We texted a 6-digit code to your number.")).to_be_visible()
    assert has_page_chrome(page), page.content()[:2000]
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Home", "Book", "Visits"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Your mobile number", level=1)).to_be_visible()
    expect(page).to_have_title("Your mobile number · " + page.locator(".brand").inner_text())
    expect(page.get_by_role("button", name="Text me a new code")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_a_refund_keeps_the_payment_pages_header_navigation_and_says_what_was_refunded(
        live_server, phone, db, factories, clock, policy, stripe_sandbox):
    from app.models import Charge
    from tests.helpers.payments import paid_appointment

    if stripe_sandbox is None:
        pytest.fail("this test needs the Stripe sandbox (unset STRIPE_SECRET_KEY)")
    appointment = paid_appointment(db, factories, clock, policy, stripe_sandbox,
                                   starts_at=datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc))
    charge = db.query(Charge).filter_by(appointment_id=appointment.id).one()
    biller = factories.user("billing")
    page = phone
    sign_in(page, live_server, biller.email)
    page.goto(f"{live_server}/billing/payments/{charge.id}", wait_until="load")
    page.get_by_label("Amount to refund (USD)").fill("25")
    page.get_by_label("Clinical reason").fill("Visit ended early")
    page.get_by_role("button", name="Refund", exact=True).click()

    expect(page.get_by_text("Refunded $25.00.")).to_be_visible()
    assert has_page_chrome(page), page.content()[:2000]
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing")).to_be_visible()
    expect(page.get_by_role("heading", name=f"Payment for appointment #{appointment.id}")).to_be_visible()
    expect(page.locator('[data-field="refunded"]')).to_have_text("$25.00")
