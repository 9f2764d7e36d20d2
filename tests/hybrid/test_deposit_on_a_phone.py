"""A patient pays a hybrid visit's deposit on a phone (360 px), in Chromium, through the Stripe
sandbox's Stripe.js: the estimate and the deposit shown, the consent required, the button busy and
never pressed twice, the booking confirmed with the card kept for the balance."""
import re

import pytest
from playwright.sync_api import expect

from tests.helpers.phone import fill_card, sign_in
from tests.hybrid.conftest import DEPOSIT

pytestmark = pytest.mark.e2e


def narrow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= 360


def test_paying_a_hybrid_deposit_on_a_phone(live_server, phone, db, clock, sandbox, hybrid_hold, stripe_admin):
    from app.models import Appointment, PaymentConsent
    from app.services import audit, hybrid_deposit, payments

    page = phone
    confirms = []
    page.on("request", lambda r: confirms.append(r.url) if r.method == "POST" and re.search(
        r"/v1/payment_intents/[^/]+/confirm$", r.url.split("?")[0]) else None)
    sign_in(page, live_server, hybrid_hold.patient.user.email)
    page.goto(f"{live_server}/book/holds/{hybrid_hold.id}")
    expect(page.get_by_role("heading", name="Your estimate")).to_be_visible()
    expect(page.locator(".your-share")).to_contain_text("$30.00")
    assert narrow(page)
    page.get_by_role("link", name="Pay deposit $30.00 now").click()

    expect(page.get_by_role("heading", name="Pay your deposit")).to_be_visible()
    expect(page.get_by_text("Deposit now: $30.00")).to_be_visible()
    expect(page.locator(".hybrid-estimate .after-insurer")).to_have_text(
        "After your insurer answers, we charge the rest to this card or refund the difference.")
    expect(page.locator("#consent-wording")).to_have_text(hybrid_deposit.CONSENT_WORDING)
    expect(page.get_by_role("timer")).to_contain_text("left")
    pay = page.get_by_role("button", name="Pay deposit $30.00")
    expect(pay).to_be_enabled()
    assert pay.bounding_box()["height"] >= 44
    assert narrow(page)

    # Without the box ticked nothing is sent: the box is required.
    fill_card(page, "4242424242424242")
    pay.click()
    consent = page.get_by_label("I agree: charge the deposit now")
    assert consent.evaluate("el => el.validity.valueMissing")
    page.wait_for_timeout(300)
    assert confirms == []
    db.expire_all()
    assert audit.actions_for(db, appointment_id=hybrid_hold.id).count("consent.accepted") == 0
    box = consent.bounding_box()
    assert box["width"] <= 32 and box["height"] <= 32
    consent.check()

    # Stripe answers slowly: the button shows it is at work, and a double tap pays once.
    attempt = payments.current_attempt(db, db.get(Appointment, hybrid_hold.id))
    sandbox.inject_faults("slow", path=f"/v1/payment_intents/{attempt.stripe_payment_intent_id}/confirm",
                          method="POST", delay=1.5)
    pay.dblclick()
    busy = page.locator("#pay-button")
    expect(busy).to_be_disabled()
    expect(busy).to_contain_text("Confirming")
    expect(consent).to_be_disabled()

    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    expect(page.get_by_text("Deposit paid: $30.00")).to_be_visible()
    expect(page.get_by_text("Your card ending 4242 is saved for this visit.")).to_be_visible()
    expect(page.get_by_role("link", name="Join the video visit")).to_be_visible()
    assert narrow(page)
    assert len(confirms) == 1, confirms

    db.expire_all()
    booked = db.get(Appointment, hybrid_hold.id)
    attempt = payments.current_attempt(db, booked)
    assert booked.status == "confirmed" and attempt.amount_captured_cents == DEPOSIT
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert intent.setup_future_usage == "off_session" and intent.amount_received == DEPOSIT
    assert booked.payment_method_id == intent.payment_method
    [consent_row] = db.query(PaymentConsent).filter_by(appointment_id=booked.id).all()
    assert consent_row.kind == "hybrid_balance" and consent_row.card_last4 == "4242"
    assert consent_row.wording == hybrid_deposit.CONSENT_WORDING
