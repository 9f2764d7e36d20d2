"""A patient who uses only a keyboard (Tab, Shift+Tab, Enter, Space, arrows; typing into the field
that has focus) signs in, books a visit and pays for it on a phone, with 3-D Secure too; the 3-D
Secure dialog keeps focus inside itself. No clicks, no filling by selector: every step first Tabs
to its control and checks what has focus."""
import pytest
from playwright.sync_api import expect

from tests.helpers.phone import CVC, EXPIRY, ZIP

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-battery"

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return {tag: "body", name: ""};
  const label = el.labels && el.labels.length ? el.labels[0].innerText : "";
  return {tag: el.tagName.toLowerCase(), type: el.type || "", label: label.trim(),
          name: (el.getAttribute("aria-label") || label || el.innerText || el.value || "").trim(),
          inDialog: !!el.closest("[role=dialog]")};
}"""


def focused(page) -> dict:
    return page.evaluate(FOCUSED)


def tab_to(page, wanted, *, key="Tab", limit=80) -> dict:
    """Press Tab (or Shift+Tab) until the focused element satisfies ``wanted(info)``."""
    seen = []
    for _ in range(limit):
        page.keyboard.press(key)
        info = focused(page)
        if wanted(info):
            return info
        seen.append(f"{info['tag']}:{info['name'][:30]}")
    raise AssertionError(f"{key} never reached the control; focus went through: {seen}")


def named(text, tag=None):
    return lambda info: text in info["name"] and (tag is None or info["tag"] == tag)


def sign_in_by_keyboard(page, base, email):
    page.goto(base + "/login")
    tab_to(page, lambda i: i["label"] == "Email")
    page.keyboard.type(email)
    tab_to(page, lambda i: i["label"] == "Password")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press("Enter")
    assert "/login" not in page.url


def book_to_checkout(page, live_server, factories):
    visit = factories.appointment_type(name="Video consult", price_cents=12500)
    provider = factories.provider(types=[visit], full_name="Dr. Kim Keys")
    me = factories.user("patient")
    sign_in_by_keyboard(page, live_server, me.email)
    # From the home page: the main navigation's Book link, then the clinician.
    tab_to(page, named("Book", "a"))
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press("Enter")
    tab_to(page, named("Dr. Kim Keys"))
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press("Enter")
    assert f"/book/providers/{provider.id}" in page.url
    slot = tab_to(page, lambda i: i["tag"] == "button" and ":" in i["name"]
                  and ("AM" in i["name"] or "PM" in i["name"]))        # a time, e.g. "9:00 AM"
    with page.expect_navigation(wait_until="load"):     # the hold answers HX-Redirect to the review
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Review your visit")).to_be_visible()
    tab_to(page, named("Continue to payment", "a"))
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    return me, slot


def type_card(page, number):
    tab_to(page, lambda i: i["label"] == "Card number")
    page.keyboard.type(number)
    page.keyboard.press("Tab")
    assert focused(page)["label"].startswith("Expiration")
    page.keyboard.type(EXPIRY.replace(" / ", ""))
    page.keyboard.press("Tab")
    assert focused(page)["label"] == "CVC"
    page.keyboard.type(CVC)
    page.keyboard.press("Tab")
    assert focused(page)["label"] == "ZIP"
    page.keyboard.type(ZIP)


def assert_booked(page, db, me):
    from app.models import Appointment

    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    expect(page.get_by_text("Paid: $125.00")).to_be_visible()
    db.expire_all()
    [booked] = db.query(Appointment).filter_by(patient_id=me.patient.id).all()
    assert booked.status == "confirmed"


def test_a_keyboard_only_patient_books_and_pays_on_a_phone(live_server, phone, factories, clock, db, sandbox):
    page = phone
    me, _ = book_to_checkout(page, live_server, factories)
    type_card(page, "4242424242424242")
    # "Save this card" is a checkbox: Space ticks it; Shift+Tab back and forth reaches it again.
    tab_to(page, lambda i: i["type"] == "checkbox")
    page.keyboard.press("Space")
    expect(page.get_by_label("Save this card for next time")).to_be_checked()
    page.keyboard.press("Shift+Tab")
    assert focused(page)["label"] == "ZIP"
    tab_to(page, named("Pay $125.00", "button"))
    page.keyboard.press("Enter")
    assert_booked(page, db, me)


def test_a_keyboard_only_patient_gets_through_3d_secure_and_focus_stays_in_its_dialog(
        live_server, phone, factories, clock, db, sandbox):
    page = phone
    me, _ = book_to_checkout(page, live_server, factories)
    type_card(page, "4000002500003155")
    tab_to(page, named("Pay $125.00", "button"))
    page.keyboard.press("Space")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    complete = dialog.get_by_role("button", name="Complete authentication")
    expect(complete).to_be_focused()
    # Screen readers were told the payment is under way (a polite status region).
    status = page.locator("#a11y-status")
    expect(status).to_have_attribute("role", "status")
    expect(status).to_have_text("Confirming…")
    # Tab and Shift+Tab cycle through the dialog's two buttons and never leave it.
    names = []
    for key in ["Tab"] * 4 + ["Shift+Tab"] * 3:
        page.keyboard.press(key)
        info = focused(page)
        assert info["inDialog"], f"{key} left the 3-D Secure dialog: {info}"
        names.append(info["name"])
    assert names == ["Fail authentication", "Complete authentication"] * 2 + \
        ["Fail authentication", "Complete authentication", "Fail authentication"], names
    page.keyboard.press("Shift+Tab")
    expect(complete).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    assert_booked(page, db, me)
