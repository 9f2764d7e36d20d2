"""On a phone (360 x 740): the off-session charge of a signed visit needs the bank's confirmation
(4000002760003184, ``authentication_required``); the patient opens the SMS link, taps Continue,
pays with the saved card in one tap, completes the 3-D Secure challenge and sees "Paid"."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.jobs import visit_charges as jobs
from app.models import CollectionCase, Notification
from tests.postvisit.test_charging import TOTAL, signed_visit, visit_settings  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.e2e


def test_the_sms_link_pays_with_3d_secure_on_a_phone(live_server, phone, db, factories, clock, browser_pay,
                                                     stripe_admin, sandbox, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, "4000002760003184")
    assert jobs.charge_case(visit.case_id) == "declined"
    sms = db.scalars(select(Notification).where(Notification.appointment_id == visit.appointment_id,
                                                Notification.template == "visit_payment_failed",
                                                Notification.channel == "sms")).one()
    link = urlsplit(sms.context["link"]).path
    page = phone

    page.goto(live_server + link)
    expect(page.get_by_role("heading", name="Pay for your visit")).to_be_visible()
    expect(page.get_by_text("Amount due: $120.00")).to_be_visible()
    db.expire_all()
    assert db.get(CollectionCase, visit.case_id).status == "recovering"      # opening the link changed nothing
    continue_ = page.get_by_role("button", name="Continue")
    assert continue_.bounding_box()["height"] >= 44
    continue_.click()

    expect(page.get_by_role("heading", name="Balance due")).to_be_visible()
    expect(page.get_by_text("You owe $120.00 for this visit.")).to_be_visible()
    one_tap = page.get_by_role("button", name="Pay with Visa •••• 3184")
    expect(one_tap).to_be_enabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert one_tap.bounding_box()["height"] >= 44
    one_tap.click()
    challenge = page.get_by_role("dialog")
    expect(challenge).to_be_visible()
    challenge.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_text("Paid", exact=True)).to_be_visible(timeout=15000)
    expect(page.get_by_text("$120.00 received")).to_be_visible()

    db.expire_all()
    case = db.get(CollectionCase, visit.case_id)
    assert (case.status, case.recovered) == ("paid", True)
    assert case.charge.amount_captured_cents == TOTAL
    assert len(stripe_admin.intents_of(visit.customer)) == 1              # the same PaymentIntent
